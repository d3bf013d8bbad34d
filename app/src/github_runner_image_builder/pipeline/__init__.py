"""One build: the step runner (multistep), the steps, and the parallel builds of a run."""
