"""The recipes script reproduces every shipped weights file, in an order that can run."""

from __future__ import annotations

from engine.resources import shipped_weights_dir
from training.recipes.shipped import GAN_PHASE, RECIPES, command


def test_every_shipped_weights_file_has_exactly_one_recipe():
    outs = [r.out for r in RECIPES if not r.stage]
    assert len(outs) == len(set(outs))
    shipped = {p for p in shipped_weights_dir().glob("*.safetensors") if ".ckpt." not in p.name}
    shipped -= {p for p in shipped if p.name.startswith("perceptual_features")}  # its own recipe
    assert shipped <= set(outs), f"no recipe for {sorted(p.name for p in shipped - set(outs))}"


def test_each_run_starts_from_a_file_an_earlier_recipe_makes_or_that_ships():
    made: set = set()
    for r in RECIPES:
        if r.init is not None:
            assert r.init in made or r.init.parent == shipped_weights_dir(), f"{r.out.name} needs {r.init}"
        made.add(r.out)
    for r in GAN_PHASE:
        assert r.init in made and r.stage == "gan"  # GAN fine-tuning never overwrites a shipped file


def test_commands_name_the_architecture_scale_and_output(tmp_path):
    for r in RECIPES:
        cmd = command(r, [tmp_path / "train.nii.gz"], [tmp_path / "val.nii.gz"], threads=None)
        assert cmd[cmd.index("--arch") + 1] == r.arch and cmd[cmd.index("--out") + 1] == str(r.out)
        assert ("--scale" in cmd) == (r.scale is not None)


def test_continued_runs_start_from_shipped_files_and_replace_them():
    from training.recipes.shipped import CONTINUED, shipped

    for runs in CONTINUED.values():
        for r in runs:
            assert r.promote and r.stage, f"{r.out.name}: a continued run writes a stage, then replaces"
            if r.init is not None:  # its own shipped file, or (x3/x4 transfer) the shipped x2
                starts = {shipped(r.arch, r.scale), shipped(r.arch, 2.0 if r.scale else None)}
                assert r.init in starts, f"{r.out.name} continues {r.init}"
