"""The OpenPose COCO-18 body network (pytorch-openpose `bodypose_model`) and its safe, strict loader.

A VGG-19 front (`model0`) makes 128-channel features F at 1/8 resolution; six stages of two branches refine part
affinity fields (L1, 38 channels) and part heatmaps (L2, 19 channels). Stage t > 1 sees [L1, L2, F] of stage t-1.

The module keys equal pytorch-openpose's (`model0.conv1_1.weight`, `model6_2.Mconv7_stage6_L2.bias`), and
`body_pose_model.pth` stores them without the first dotted component (`conv1_1.weight`), so `load_body` maps
file keys to module keys with that rule and nothing else.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn

from ..runtime import torch_dtype
from ..models.checkpoint import check_state_dict, load_checked, read_torch_file, unwrap_state_dict

NUM_PAF = 38
NUM_HEATMAP = 19
FEATURES = 128
STAGES = 6

# (name, in, out, kernel) of the VGG front; "pool" entries are 2x2 max-pools.
_BACKBONE = (
    ("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), "pool",
    ("conv2_1", 64, 128, 3), ("conv2_2", 128, 128, 3), "pool",
    ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3), ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3), "pool",
    ("conv4_1", 256, 512, 3), ("conv4_2", 512, 512, 3), ("conv4_3_CPM", 512, 256, 3), ("conv4_4_CPM", 256, 128, 3),
)


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=1, padding=k // 2)


def _block(layers, final_relu: bool) -> nn.Sequential:
    """Convs with a ReLU after each one except (unless `final_relu`) the last."""
    modules = OrderedDict()
    for i, (name, cin, cout, k) in enumerate(layers):
        modules[name] = _conv(cin, cout, k)
        if i < len(layers) - 1 or final_relu:
            modules[f"relu_{name}"] = nn.ReLU(inplace=True)
    return nn.Sequential(modules)


def _stage1(branch: int) -> nn.Sequential:
    out = NUM_PAF if branch == 1 else NUM_HEATMAP
    names = [f"conv5_{i}_CPM_L{branch}" for i in range(1, 6)]
    return _block([(names[0], FEATURES, 128, 3), (names[1], 128, 128, 3), (names[2], 128, 128, 3),
                   (names[3], 128, 512, 1), (names[4], 512, out, 1)], final_relu=False)


def _stage(t: int, branch: int) -> nn.Sequential:
    out = NUM_PAF if branch == 1 else NUM_HEATMAP
    n = [f"Mconv{i}_stage{t}_L{branch}" for i in range(1, 8)]
    layers = [(n[0], NUM_PAF + NUM_HEATMAP + FEATURES, 128, 7)] + [(n[i], 128, 128, 7) for i in range(1, 5)]
    layers += [(n[5], 128, 128, 1), (n[6], 128, out, 1)]
    # pytorch-openpose lists Mconv7_stage6_L1 twice in its no-ReLU set and never Mconv7_stage6_L2, so the published
    # network's final heatmap passes through a ReLU (REFERENCE.md D.3). The weights were used that way; keep it.
    return _block(layers, final_relu=(t == STAGES and branch == 2))


class BodyPoseModel(nn.Module):
    """forward(x (B,3,H,W), H and W multiples of 8) -> (paf (B,38,H/8,W/8), heatmap (B,19,H/8,W/8))."""

    def __init__(self):
        super().__init__()
        modules = OrderedDict()
        for item in _BACKBONE:
            if item == "pool":
                modules[f"pool{len([m for m in modules if m.startswith('pool')]) + 1}_stage1"] = nn.MaxPool2d(2, 2)
            else:
                name, cin, cout, k = item
                modules[name] = _conv(cin, cout, k)
                modules[f"relu_{name}"] = nn.ReLU(inplace=True)
        self.model0 = nn.Sequential(modules)
        # Registration order = pytorch-openpose's, so state_dict() lists keys in the file's order.
        for branch in (1, 2):
            for t in range(1, STAGES + 1):
                setattr(self, f"model{t}_{branch}", _stage1(branch) if t == 1 else _stage(t, branch))

    def stages(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every stage's (L1, L2) output, for inspection; the last pair is what `forward` returns."""
        features = self.model0(x)
        out = [(self.model1_1(features), self.model1_2(features))]
        for t in range(2, STAGES + 1):
            joined = torch.cat([out[-1][0], out[-1][1], features], 1)
            out.append((getattr(self, f"model{t}_1")(joined), getattr(self, f"model{t}_2")(joined)))
        return out

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model0(x)
        paf, heatmap = self.model1_1(features), self.model1_2(features)
        for t in range(2, STAGES + 1):
            joined = torch.cat([paf, heatmap, features], 1)
            paf, heatmap = getattr(self, f"model{t}_1")(joined), getattr(self, f"model{t}_2")(joined)
        return paf, heatmap


def file_key(module_key: str) -> str:
    """`model0.conv1_1.weight` -> `conv1_1.weight`, the key `body_pose_model.pth` stores."""
    return module_key.split(".", 1)[1]


def file_shapes(model: BodyPoseModel | None = None) -> dict[str, tuple]:
    """The file's keys and shapes, in the network's order."""
    if model is None:
        return {file_key(k): v for k, v in _SHAPES.items()}
    return {file_key(k): tuple(v.shape) for k, v in model.state_dict().items()}


with torch.device("meta"):  # module key -> shape, without allocating the weights
    _SHAPES = {k: tuple(v.shape) for k, v in BodyPoseModel().state_dict().items()}


def load_body(path, device="cpu", precision: str = "float32", compile: bool = False) -> BodyPoseModel:
    """Load `body_pose_model.pth` (file keys, or module keys as saved from `BodyPoseModel`) in eval mode on `device`.

    `precision="bfloat16"` runs about twice as fast on CPUs with AVX512-BF16 or AMX (and on GPUs); its keypoints
    differ slightly from the published float32 behaviour (`meshconf check-precision` measures it on your images).
    `compile=True` compiles the network with frozen weights (`meshconf.accel`): same outputs to float rounding,
    faster forwards after a compilation of 10-30 s per input shape.
    """
    dtype = torch_dtype(precision)  # one line for an unknown precision, before the file is read

    def read_and_check() -> dict:
        what = "OpenPose body weights"
        hint = "Get it with `meshconf fetch` (OpenPose's body_pose_model.pth) or pass its path."
        state = unwrap_state_dict(read_torch_file(path, what, hint), path, what)
        module_keys = list(_SHAPES)
        if state and all(k in module_keys for k in state):  # our own saves keep the module keys
            state = {file_key(k): v for k, v in state.items()}
        check_state_dict(state, {file_key(k): v for k, v in _SHAPES.items()}, path, "OpenPose COCO-18 body network")
        by_file_key = {file_key(k): k for k in module_keys}
        return {by_file_key[k]: v for k, v in state.items()}

    state = load_checked(path, "openpose_body", read_and_check, _SHAPES)
    with torch.device("meta"):  # no random initialisation of 52M weights that the file replaces at once
        model = BodyPoseModel()
    model.load_state_dict(state, strict=True, assign=True)
    model.weights_path = os.fspath(path)
    model = model.to(device=device, dtype=dtype).eval()
    if precision == "bfloat16":  # oneDNN's bfloat16 convolutions are fastest in channels-last layout
        model = model.to(memory_format=torch.channels_last)
    if compile:
        from ..accel import compile_network

        compile_network(model)
    return model
