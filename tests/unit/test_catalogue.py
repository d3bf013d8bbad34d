"""How the leader takes builds and handovers into the catalogue, and when a handover can go."""

import datetime

from catalogue import Catalogue, CatalogueImage

T1 = datetime.datetime(2026, 11, 23, 14, 0, tzinfo=datetime.timezone.utc)
T2 = T1 + datetime.timedelta(hours=6)


def _image(cloud: str, base: str, image_id: str, built_at: datetime.datetime) -> CatalogueImage:
    return CatalogueImage(cloud=cloud, base=base, arch="x64", id=image_id, built_at=built_at)


def test_the_leader_takes_in_newer_images_settles_and_drops_departed_clouds() -> None:
    held = Catalogue.of(
        [
            _image("a_u_1", "jammy", "old-jammy", T1),
            _image("a_u_1", "noble", "new-noble", T2),
            _image("gone_u_9", "noble", "gone", T1),
        ]
    )
    built = Catalogue.of([_image("a_u_1", "noble", "stale-noble", T1)])  # handed over late
    handover = Catalogue.of([_image("b_u_2", "noble", "b-noble", T2)])
    taken = held.take_in([built, handover], ["noble"], "x64", {"a_u_1": 1, "b_u_2": 2})
    assert taken == Catalogue.of(
        [
            _image("a_u_1", "noble", "new-noble", T2),  # the newer image keeps its key
            _image("b_u_2", "noble", "b-noble", T2),
        ]
    )


def test_old_settings_stay_until_a_cloud_has_every_current_base() -> None:
    held = Catalogue.of([_image("a_u_1", "jammy", "old-jammy", T1)])
    built = Catalogue.of([_image("a_u_1", "noble", "new-noble", T2)])
    taken = held.take_in([built], ["noble", "resolute"], "x64", ["a_u_1"])
    assert taken.ids() == {"old-jammy", "new-noble"}  # resolute missing: jammy still published


def test_a_handover_can_go_once_covered_for_the_clouds_still_there() -> None:
    leader = Catalogue.of([_image("a_u_1", "noble", "img-2", T2)])
    handover = Catalogue.of(
        [_image("a_u_1", "noble", "img-1", T1), _image("gone_u_9", "noble", "img-9", T1)]
    )
    assert leader.covers_handover(handover, ["a_u_1"])  # superseded; the gone cloud ignored
    assert not leader.covers_handover(handover, ["a_u_1", "gone_u_9"])
