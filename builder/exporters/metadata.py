"""``--metadata-file``: the build's result as JSON that CI and benchmarks can read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from builder.errors import BuildError
from builder.outcome import BuildOutcome


def metadata(outcome: BuildOutcome) -> dict[str, Any]:
    steps = [
        {
            "id": s.step_id,
            "instruction": s.title,
            "key": s.key,
            "cached": s.cached,
            "reason": s.reason,
            "duration": round(s.duration, 4),
            "layer": str(s.layer.digest) if s.layer else None,
            "layer_size": s.layer.size if s.layer else 0,
            "started": s.started,
            "finished": s.finished,
            "saved": round(s.saved, 4),
        }
        for s in outcome.steps
    ]
    total = len(outcome.steps)
    return {
        "build.id": outcome.build_id,
        "image.digest": str(outcome.digest),
        "containerimage.digest": str(outcome.digest),  # the index of a multi-platform build
        "containerimage.config.digest": str(outcome.image.config_digest),
        "image.id": str(outcome.image_id),  # what -q and --iidfile print
        # The image's labels (Dockerfile LABEL and --label): how a series is grouped.
        "labels": dict(outcome.image.config.config.labels),
        "steps": steps,
        "totals": {
            "steps": total,
            "cached": outcome.cached_steps,
            "hit_rate": outcome.hit_rate,
            "sandbox_runs": outcome.sandbox_runs,
            "bytes_reused": outcome.bytes_reused,
            "time_saved": round(outcome.time_saved, 4),
            "duration": round(outcome.duration, 4),
        },
    }


def write_metadata(path: Path, outcome: BuildOutcome) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(metadata(outcome), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"cannot write metadata file {path}: {exc.strerror}") from None
