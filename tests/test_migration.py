"""Every command of the migration table (docs/migration.md, "Coming from the original meshConfidence scripts") runs,
with recipe weights: the table's text is checked to be there, and its placeholders are filled with test files."""

from __future__ import annotations

import shlex
import shutil

import numpy as np
import pytest
import torch

from conftest import REPO


def _table() -> str:
    return (REPO / "docs" / "migration.md").read_text()


@pytest.mark.slow
def test_every_migration_command_runs(tmp_path, demo_data_dir, tiny_dataset, shared, spin_checkpoint, capsys):
    from meshconf.classifier.models import OriginalModels
    from meshconf.cli import main

    table = _table()
    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)  # the sensitivity jobs need it
    ann, root = tiny_dataset
    crop = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    sets = shared / "data" / "meshconfidence" / "sp_op" / "3dpw"
    small = tmp_path / "sets"  # 2,000 rows of each 3DPW training set: prepare and train in seconds
    small.mkdir()
    for name in ("3dpw_train", "3dpw_occ_train"):
        for suffix in ("sp_op", "sp_gt", "conf"):
            np.save(small / f"{name}_{suffix}.npy", np.load(sets / f"{name}_{suffix}.npy")[:2000])
    torch.manual_seed(0)
    original = OriginalModels()
    torch.save(original.mc.state_dict(), tmp_path / "classifier.pt")
    torch.save(original.wj.state_dict(), tmp_path / "classifier_wj.pt")
    models = ["--data-dir", str(demo_data_dir), "--no-progress"]
    # (text in the table, the command with its placeholders filled in)
    commands = [
        ("meshconf demo demo/3doh_img_0_orig.png --cropped",
         f"demo {crop} --cropped --renderer software --out {tmp_path}/demo"),
        ("python -m meshconf demo --img ... --checkpoint ...",
         f"demo --img {crop} --checkpoint {spin_checkpoint} --renderer software --out {tmp_path}/img"),
        ("meshconf extract ... --name 3dpw_test [--occlude --seed 0]",
         f"extract --annotations {ann} --images {root} --out {tmp_path}/arrays --name 3dpw_test --occlude --seed 0"),
        ("meshconf qualitative --dataset 3dpw --img_number 0 --annotations ... --images ... --arrays ...",
         f"qualitative --dataset 3dpw --img_number 0 --annotations {ann} --images {root} --arrays {tmp_path}/arrays "
         f"--renderer software --out {tmp_path}/qual"),
        ("meshconf sensitivity image --dataset=3dpw --img_number=0 --annotations A.npz --images ROOT --model spin",
         f"sensitivity image --dataset=3dpw --img_number=0 --annotations {ann} --images {root} --model spin "
         f"--stride 92 --out {tmp_path}/s1"),
        ("meshconf sensitivity image CROP --model spin", f"sensitivity image {crop} --model spin --stride 92 "
                                                         f"--out {tmp_path}/s2"),
        ("meshconf sensitivity image CROP --model openpose", f"sensitivity image {crop} --model openpose --stride 92 "
                                                             f"--out {tmp_path}/s3"),
        ("meshconf sensitivity dataset --annotations ... --images ... --model spin",
         f"sensitivity dataset --annotations {ann} --images {root} --model spin --max-images 2 --out {tmp_path}/d"),
        ("meshconf sensitivity dataset ... --model openpose",
         f"sensitivity dataset --annotations {ann} --images {root} --model openpose --max-images 1 "
         f"--out {tmp_path}/d"),
        ("meshconf prepare", f"prepare --data {small} --out {tmp_path}/prepared"),
        ("meshconf train", f"train --prepared {tmp_path}/prepared --out {tmp_path}/trained --model original"),
        ("meshconf evaluate", f"evaluate --data {small} --sets 3dpw_train --model {tmp_path}/trained/original."
                              f"safetensors original --train-sets --out {tmp_path}/eval"),
        ("meshconf convert-classifier classifier.pt classifier_wj.pt mine.safetensors",
         f"convert-classifier {tmp_path}/classifier.pt {tmp_path}/classifier_wj.pt {tmp_path}/mine.safetensors"),
        ("--estimator mine.safetensors", f"demo {crop} --cropped --renderer software --estimator "
                                         f"{tmp_path}/mine.safetensors --out {tmp_path}/mine"),
        ("meshconf doctor", f"doctor --quick --data-dir {demo_data_dir}"),
    ]
    for text, command in commands:
        assert text in table, f"docs/migration.md no longer shows `{text}`"
        argv = shlex.split(command)
        if argv[0] in ("demo", "extract", "qualitative", "sensitivity"):
            argv += models
        code = main(argv)
        err = capsys.readouterr().err
        assert code in ((0, 1) if argv[0] == "doctor" else (0,)), (text, code, err[-800:])
    assert (tmp_path / "qual" / "3dpw_img_0.html").is_file() and (tmp_path / "mine" / "index.html").is_file()
