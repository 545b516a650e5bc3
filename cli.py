"""GLOBE command line: ``python cli.py {fit,validate,test,predict} --config ...``.

A ``LightningCLI`` in subclass mode: the model and the data module are chosen in YAML with
``class_path`` / ``init_args``: models (the GRPO policy, the localizability reward model, the
distillation teachers of ``predict``, the retrieval model) and data (GeoSynth, MP16-Reason shards,
localizability pairs, raw image folders, IM2GPS3K). Several ``--config`` files compose (later
files override earlier ones). ``--print_config`` prints the resolved configuration.

Without any ``--config`` the demo configuration (``configs/demo.yaml``) is used, so
``python cli.py fit`` runs the demo. Weights & Biases logs offline when no API key is set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parent / "configs" / "demo.yaml"


def _has_config(argv: list[str]) -> bool:
    return any(a in ("-c", "--config") or a.startswith("--config=") for a in argv)


def _wandb_offline_without_key() -> None:
    """Log locally (``wandb sync`` later) unless the user configured an account."""
    has_key = os.environ.get("WANDB_API_KEY") or (Path.home() / ".netrc").exists()
    if not has_key:
        os.environ.setdefault("WANDB_MODE", "offline")


def main(argv: list[str] | None = None) -> None:
    args = argv  # None: LightningCLI reads sys.argv itself
    argv = sys.argv[1:] if argv is None else argv
    _wandb_offline_without_key()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from lightning.pytorch import LightningDataModule, LightningModule
    from lightning.pytorch.cli import LightningCLI

    class GlobeCLI(LightningCLI):
        def _parse_ckpt_path(self) -> None:
            """The config files and the command line decide every setting; ``--ckpt_path`` only
            restores state. (Lightning's default re-applies the hyper-parameters stored in the
            checkpoint over the command line, so ``test`` could not change e.g. the decoding.)"""

    defaults = [] if _has_config(argv) else [str(DEMO_CONFIG)]
    GlobeCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_kwargs={"default_config_files": defaults, "parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()
