"""Which stacking mode wins on digits8, and which member carries the winning fusion?

Takes a two-member stack (a small CNN's features and an MLP's, a dense head on top), trains
it in every stacking mode that makes sense for those members (Compare modes: one grid sweep,
each trial an ordinary run, the same seed and epochs), prints the table the Sweeps page
shows, then ablates the fusion run: its validation accuracy with each member's features
zeroed at the merge.

    python examples/compare_and_ablate.py [--epochs 3]

The runs go to $STACKLAB_HOME (a temporary one unless it is set), so the dashboard shows
them too: `STACKLAB_HOME=... make dashboard`.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core import runs, sweeps  # noqa: E402
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec  # noqa: E402


def two_member_stack(epochs: int) -> StackSpec:
    return StackSpec(
        name="digits8-two-members", mode="fusion",
        members=(MemberSpec("cnn", template="cnn_features", params={"filters": [8], "dense_units": 32}),
                 MemberSpec("mlp", template="mlp", params={"hidden_units": [32]})),
        head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
        auto_adapters=True,  # the MLP takes a flat vector: a Flatten goes in front of it
        train=TrainSpec(epochs=epochs, batch_size=32, learning_rate=0.003, seed=0),
        dataset=DatasetSpec(name="digits8"))


def compare(spec: StackSpec) -> sweeps.SweepSummary:
    study = sweeps.create_sweep(sweeps.compare_modes_spec(spec))
    summary = sweeps.drive(study, on_trial=lambda row: print(
        f"  {row.params.get('variant', '?'):<12} {row.state:<9} {row.value if row.value is not None else '-'}",
        flush=True))
    print(f"\n{'variant':<12} {'params':>8} {'trainable':>10} {'time':>6}  best {summary.objective}")
    for row in sorted(summary.trials, key=lambda row: row.params.get("variant", "")):
        run = runs.get(row.run_id) if row.run_id else None
        if run is None or row.value is None:  # a variant that did not build or train: its reason
            print(f"{row.params.get('variant', '?'):<12} {row.state}: {row.reason}")
            continue
        print(f"{row.params['variant']:<12} {run.total_params or 0:>8,} {run.trainable_params or 0:>10,} "
              f"{run.duration_s or 0:>5.1f}s  {row.value:.4f}")
    if summary.best is not None:
        print(f"best mode: {summary.best.params['variant']} ({summary.objective} {summary.best.value:.4f})")
    return summary


def ablate(summary: sweeps.SweepSummary) -> None:
    """The fusion trial's member ablation (in this process: it imports Keras)."""
    from core.training.ablation import ablate_run

    fusion = next((row for row in summary.trials if row.params.get("variant") in ("fusion", "fusion_raw")
                   and row.run_id and row.state == "complete"), None)
    if fusion is None:
        print("no finished fusion trial to ablate")
        return
    result = ablate_run(fusion.run_id)
    print(f"\nmember ablation of {fusion.params['variant']} (run {fusion.run_id}), {result['metric']}:")
    print(f"  whole stack      {result['full']:.4f}")
    for row in result["members"]:
        print(f"  without {row['member']:<8} {row['value']:.4f}  (drop {row['drop']:+.4f})")
    print(result["reading"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("STACKLAB_HOME", tempfile.mkdtemp(prefix="stacklab-compare-"))
    print(f"runs and the sweep in {os.environ['STACKLAB_HOME']}")
    ablate(compare(two_member_stack(args.epochs)))


if __name__ == "__main__":
    main()
