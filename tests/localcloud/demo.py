"""The demo: build a runner image on the built-in local OpenStack; show what the charm publishes.

Run with `./dev demo`. It starts the local cloud (installing the services on first use), runs
the real CLI's `init` and `build` for noble/x64 with one upload cloud, prints the CLI's JSON
and the `image` relation data the charm would publish for that cloud, then stops the cloud.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

from charms.github_runner_image_builder.v0.image import ProviderImages, PublishedImage
from lcloud import cli, guest, mirror
from lcloud.cloud import LocalCloud

PREFIX = "demo"


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    """Run the demo; return the exit code."""
    began = time.monotonic()
    if not cli.has_command("build"):
        print("the CLI's build command is not on this branch yet: git merge main", file=sys.stderr)
        return 1
    _say("starting the local OpenStack (Keystone, Glance, Placement, Nova, Neutron) on 127.0.0.1")
    with LocalCloud.start() as cloud, tempfile.TemporaryDirectory() as tmp:
        print(f"up in {cloud.timings['total_start']:.1f} s "
              f"(services installed in {cloud.timings['install']:.1f} s; 0 = cached)")  # fmt: skip
        # The stand-in guest "runs" the user-data for 3 s, prints the marker, powers off.
        cloud.guests([guest.GuestScript(match=PREFIX, after=3)])
        with mirror.serve(Path(tmp)) as images:
            images.publish("noble", "amd64")
            common = ["--prefix", PREFIX, "--cloud-images-url", images.url]
            _say("github-runner-image-builder init --base noble --arch x64")
            init = cli.run(cloud, "init", "--base", "noble", "--arch", "x64", *common)
            print(init.stdout or init.stderr)
            if init.code:
                return init.code
            _say(f"github-runner-image-builder build --upload-clouds {LocalCloud.RUNNER_A}")
            build = cli.run(
                cloud, "build", "--base", "noble", "--arch", "x64",
                "--upload-clouds", LocalCloud.RUNNER_A, "--timeout", "5m", *common,
            )  # fmt: skip
            print(build.stdout)
            if build.code:
                print(build.stderr, file=sys.stderr)
                return build.code
        images_built = build.json()["images"]
        _say("the verified image's software report (from its test server; Glance properties)")
        first = images_built[0]
        for name, version in first["software"].items():
            print(f"  {name:<12} {version}")
        checks = ", ".join(f"{c['name']} {'ok' if c['ok'] else 'FAILED'}" for c in first["checks"])
        print(f"  checks: {checks}")
        published = [
            PublishedImage(id=i["id"], arch=i["arch"], base=i["base"])
            for i in images_built
            if i["cloud"] == LocalCloud.RUNNER_A
        ]
        _say(f"relation data the charm publishes to the runner charm of {LocalCloud.RUNNER_A}")
        databag = ProviderImages.from_published(published).to_databag()
        print(json.dumps(databag, indent=2))
        glance = cloud.connect(LocalCloud.RUNNER_A).image.get_image(databag["id"])
        _say(f"that image in the runner cloud's Glance: {glance.name} {glance.status}")
        for key, value in sorted(glance.properties.items()):
            if key.startswith(("grib_sw_", "grib_verified", "grib_checks")):
                print(f"  {key} = {value}")
        _say("stopping the local cloud")
    print(f"demo done in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
