"""Images: Ubuntu base images and their mirror, revisions and pruning, copies between clouds."""
