"""Built-in datasets that ship beside the project (``../shared/data``), written out in recordable form.

``kriegeskorte92``: the 92 object images of Kriegeskorte et al. 2008 (Neuron 60:1126) with their
category flags, and the monkey-IT and human-IT RDMs of that paper's Figure 1 in the same .mat file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from neurometry.errors import NeurometryError

KRIEGESKORTE_FILE = Path("kriegeskorte92") / "Kriegeskorte_Neuron2008_supplementalData.mat"
KRIEGESKORTE_RDM_KEY = "RDMs_mIT_hIT_fig1"
"""Variable of the .mat file holding the two reference RDMs (monkey IT, human IT), for ``--rdm-key``."""


def shared_data_dir() -> Path:
    """``$NEUROMETRY_DATA`` if set, else ``../shared/data`` beside the repository checkout."""
    if os.environ.get("NEUROMETRY_DATA"):
        return Path(os.environ["NEUROMETRY_DATA"])
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def kriegeskorte_mat() -> Path:
    """Path of the Kriegeskorte et al. 2008 .mat file; an error naming the fix when it is missing."""
    path = shared_data_dir() / KRIEGESKORTE_FILE
    if not path.is_file():
        raise NeurometryError(
            f"{path} not found; put the shared data folder beside the checkout or set NEUROMETRY_DATA to it"
        )
    return path


def export_kriegeskorte92(out: str | os.PathLike) -> Path:
    """Write the 92 stimuli as PNGs plus ``stimuli.jsonl`` (image, stimulus, category, human, face, animal,
    natural) into ``out``; returns the JSONL path, ready for ``neurometry record MODEL <it>``."""
    import scipy.io
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stimuli = scipy.io.loadmat(kriegeskorte_mat(), struct_as_record=False, squeeze_me=True)["stimuli_92objs"]
    rows = []
    for i, stim in enumerate(stimuli):
        name = f"stim{i:02d}.png"
        if not (out / name).exists():
            Image.fromarray(stim.image).save(out / name)
        rows.append(
            {
                "image": name,
                "stimulus": i,
                "category": str(stim.category),
                **{flag: int(getattr(stim, flag)) for flag in ("human", "face", "animal", "natural")},
            }
        )
    jsonl = out / "stimuli.jsonl"
    tmp = jsonl.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(jsonl)
    return jsonl


DATASETS = {"kriegeskorte92": export_kriegeskorte92}
