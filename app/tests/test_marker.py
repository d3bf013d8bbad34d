"""Tests of the console completion protocol."""

import pytest

from github_runner_image_builder.guest import marker


def test_success_round_trip() -> None:
    nonce = marker.new_nonce()
    console = (
        f"[  12.3] cloud-init: ...\n{marker.success_line(nonce)}\r\n[  13.0] reboot: Power down\n"
    )
    assert marker.parse_console(console, nonce) == marker.Marker(success=True)


def test_failure_names_step() -> None:
    console = "noise\n" + marker.failure_line("abc", "script") + "\n"
    assert marker.parse_console(console, "abc") == marker.Marker(success=False, step="script")


def test_other_nonce_or_no_marker_is_none() -> None:
    assert marker.parse_console(marker.success_line("old") + "\n", "new") is None
    assert marker.parse_console("booted\nnothing here\n", "new") is None


def test_kernel_prefix_on_same_line_still_matches() -> None:
    console = "[   40.1] cloud-init[712]: " + marker.failure_line("n1", "apt")
    assert marker.parse_console(console, "n1") == marker.Marker(success=False, step="apt")


def test_bad_step_name_rejected() -> None:
    with pytest.raises(ValueError, match="invalid step"):
        marker.failure_line("n", "bad step; rm -rf /")


def test_find_nonce_in_user_data() -> None:
    script = "#!/bin/bash\nset -eu\nreadonly GRIB_NONCE=0a1b2c\necho hi\n"
    assert marker.find_nonce(script) == "0a1b2c"
    assert marker.find_nonce("#!/bin/bash\necho GRIB_NONCE=zz\n") is None
