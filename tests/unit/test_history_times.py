"""History and config ``created`` times as BuildKit's image exporter sets them
(exporter/containerimage/writer.go normalizeLayersAndHistory, patchImageConfig)."""

from __future__ import annotations

from builder.images.history import fill_history, image_created, rfc3339
from cache.oci import History


def _h(created: str, layer: bool = True) -> History:
    return History(created, "x", "", empty_layer=not layer)


def test_rfc3339_writes_whole_seconds_without_a_fraction() -> None:
    assert rfc3339(1_700_000_000) == "2023-11-14T22:13:20Z"


def test_rfc3339_drops_trailing_zeros_of_the_fraction() -> None:
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.25Z"


def test_metadata_entries_before_the_first_new_layer_take_that_layers_time() -> None:
    base = [_h("2020-01-01T00:00:00Z")]
    history = [*base, _h("", layer=False), _h("2024-01-01T00:00:00Z"), _h("", layer=False)]
    filled = fill_history(history)
    assert [h.created for h in filled] == [
        "2020-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
    ]


def test_metadata_entries_take_the_time_of_the_layer_before_them() -> None:
    history = [_h("", False), _h("T1"), _h("", False), _h("T2"), _h("", False)]
    assert [h.created for h in fill_history(history)] == ["T1", "T1", "T1", "T2", "T2"]


def test_metadata_only_build_takes_the_base_images_last_time() -> None:
    history = [_h("B1"), _h("B2"), _h("", False)]
    assert [h.created for h in fill_history(history)] == ["B1", "B2", "B2"]


def test_history_without_any_time_stays_without_one() -> None:
    filled = fill_history([_h("", False), _h("", False)])
    assert [h.created for h in filled] == ["", ""]
    assert image_created(filled) == ""


def test_image_created_is_the_last_entrys_time_not_the_newest() -> None:
    assert image_created([_h("2024-01-01T00:00:00Z"), _h("2023-01-01T00:00:00Z")]) == (
        "2023-01-01T00:00:00Z"
    )
