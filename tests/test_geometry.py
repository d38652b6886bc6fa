import numpy as np
import pytest
import torch

from meshconf import constants as C
from meshconf import geometry


@pytest.mark.parametrize("case", ["demo_3doh", "offcenter_dark_3doh"])
def test_crop_bit_exact(golden, case):
    g = golden("crop_golden.npz")
    center, scale = g[f"{case}__center"], float(g[f"{case}__scale"])
    ul, br = geometry.crop_box(center, scale)
    np.testing.assert_array_equal(ul, g[f"{case}__ul"])
    np.testing.assert_array_equal(br, g[f"{case}__br"])
    out = geometry.crop(g[f"{case}__image_rgb"], center, scale, res=224)
    assert out.dtype == np.uint8 and out.shape == (224, 224, 3)
    np.testing.assert_array_equal(out, g[f"{case}__crop_u8"])


def test_demo_preprocessing_exact(golden, shared):
    import cv2

    g = golden("ed_demo_golden.npz")
    bgr = cv2.imread(str(shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))
    rgb = bgr[:, :, ::-1]
    center, scale = geometry.centered_box(*rgb.shape[:2])
    crop = geometry.crop(rgb, center, scale)
    np.testing.assert_array_equal(crop.astype(np.float32) / 255.0, g["img_crop_float"])
    norm = geometry.normalize_crop(crop)[None]
    np.testing.assert_array_equal(norm.numpy(), g["norm_img"])
    op_img = geometry.denormalize_to_bgr255(norm)[0]
    np.testing.assert_allclose(op_img, g["op_img"], atol=1e-4)


def test_mean_root_pose_is_180_about_x(mean_params):
    rot = geometry.rot6d_to_rotmat(torch.from_numpy(mean_params["pose"][:6]))
    np.testing.assert_allclose(rot[0].numpy(), np.diag([1.0, -1.0, -1.0]), atol=1e-2)


def test_rot6d_is_orthonormal_and_uses_column_split():
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])  # columns (1,0,0) and (0,1,0)
    np.testing.assert_allclose(geometry.rot6d_to_rotmat(x)[0].numpy(), np.eye(3), atol=1e-7)
    r = geometry.rot6d_to_rotmat(torch.randn(50, 6, generator=torch.Generator().manual_seed(0)))  # seeded: not flaky
    np.testing.assert_allclose((r @ r.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), (50, 3, 3)), atol=1e-5)
    np.testing.assert_allclose(torch.linalg.det(r).numpy(), 1.0, atol=1e-5)


def test_camera_and_projection():
    cam = torch.tensor([[0.9, 0.1, -0.2]])
    t = geometry.camera_translation(cam)
    np.testing.assert_allclose(t.numpy(), [[0.1, -0.2, 10000 / (224 * 0.9 + 1e-9)]], rtol=1e-6)
    kp = geometry.project_spin_joints(torch.zeros(1, 1, 3), cam)
    np.testing.assert_allclose(kp.numpy()[0, 0], [5000 * 0.1 / t[0, 2].item() + 112,
                                                  5000 * -0.2 / t[0, 2].item() + 112], rtol=1e-6)
    np.testing.assert_allclose(geometry.to_normalized(np.array([112.0, 224.0])), [0.0, 1.0])


def test_transform_truncates_toward_zero():
    # A point left of the box maps to a negative coordinate: truncation, not floor.
    p = geometry.transform_point([-10.0, 50.0], (100, 100), 1.0)
    t = geometry.get_transform((100, 100), 1.0)
    raw = t @ np.array([-11.0, 49.0, 1.0])
    np.testing.assert_array_equal(p, np.trunc(raw[:2]).astype(int) + 1)


def test_crop_rejects_bad_boxes():
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError):
        geometry.crop(img, (500, 500), 0.1)
    with pytest.raises(ValueError):
        geometry.crop(np.zeros((50, 50), np.uint8), (25, 25), 0.25)


def test_constants_consistent():
    assert len(C.SPIN_JOINT_NAMES) == len(C.SPIN_JOINT_MAP) == 49
    assert C.SPIN_JOINT_NAMES[C.SPIN_TO_J14_ED[12]] == "Thorax (MPII)"
    assert C.SPIN_JOINT_NAMES[C.SPIN_SPINE] == "Spine (H36M)"
    assert [C.COCO18_NAMES[i] for i in C.COCO_TO_J14[:3]] == ["RAnkle", "RKnee", "RHip"]
    assert len(C.PART_TO_J14) == 24 and len(C.OP_LIMBS) == len(C.OP_LIMB_PAF) == 19
