"""Every joint order, index map and numeric constant of the pipeline, each named once.

Sources: SPIN `constants.py`, pytorch-openpose `body.py`, meshConfidence `constants.py` and `sp_op/correlation.py`
(see REFERENCE.md and SPEC-original.md). Index maps are plain tuples so that they can be used by numpy and torch alike.
"""

VERSION = "0.1.0"  # the package's version (pyproject.toml says the same; written into reports, arrays and meshes)

# --------------------------------------------------------------------------------------------------------------
# Images and cameras (SPIN)
IMG_RES = 224
FOCAL_LENGTH = 5000.0
# The principal point is the integer 224 // 2, and the normalised 2D unit is 112 px (REFERENCE.md B.5, F.1).
CROP_CENTER = IMG_RES // 2
NORM_UNIT_PX = IMG_RES / 2.0
IMG_NORM_MEAN = (0.485, 0.456, 0.406)  # RGB, ImageNet
IMG_NORM_STD = (0.229, 0.224, 0.225)
# A person box of scale s is 200*s pixels wide (SPIN convention).
BOX_SCALE_PX = 200.0

# --------------------------------------------------------------------------------------------------------------
# The 14 joints in which ED, SE and every classifier work (LSP order).
J14_NAMES = (
    "R ankle", "R knee", "R hip", "L hip", "L knee", "L ankle", "R wrist",
    "R elbow", "R shoulder", "L shoulder", "L elbow", "L wrist", "Neck", "Head",
)
NUM_J14 = len(J14_NAMES)
J14_R_HIP, J14_L_HIP, J14_NECK = 2, 3, 12

# --------------------------------------------------------------------------------------------------------------
# SPIN's 49 output joints: 25 OpenPose-style + 24 ground-truth-style.
SPIN_JOINT_NAMES = (
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder", "OP LElbow", "OP LWrist",
    "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee", "OP LAnkle", "OP REye", "OP LEye",
    "OP REar", "OP LEar", "OP LBigToe", "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle", "Right Wrist", "Right Elbow",
    "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist", "Neck (LSP)", "Top of Head (LSP)",
    "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)", "Nose", "Left Eye",
    "Right Eye", "Left Ear", "Right Ear",
)
# Row of the 54 smplx+extra joints (45 smplx joints, then the 9 rows of J_regressor_extra) behind each of the 49.
SPIN_JOINT_MAP = (
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
    8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27,
)
NUM_SPIN_JOINTS = len(SPIN_JOINT_MAP)
NUM_SMPLX_JOINTS = 45
NUM_EXTRA_JOINTS = 9

# SPIN 49 -> J14 for ED against OpenPose: neck is Thorax (MPII), head is the smplx nose vertex.
SPIN_TO_J14_ED = (11, 10, 9, 12, 13, 14, 4, 3, 2, 5, 6, 7, 40, 0)
# SPIN 49 -> J14 for SE against ground truth: neck is Neck (LSP), head is Jaw (H36M).
SPIN_TO_J14_SE = (11, 10, 9, 12, 13, 14, 4, 3, 2, 5, 6, 7, 37, 42)
# The intended (never active, SPEC §6 #13) H36M variant puts GT-style hips in slots 2 and 3.
SPIN_TO_J14_ED_H36M = (11, 10, 27, 28, 13, 14, 4, 3, 2, 5, 6, 7, 40, 0)
SPIN_SPINE = 41  # Spine (H36M): SPIN's end of the relative alignment

# --------------------------------------------------------------------------------------------------------------
# SMPL
NUM_SMPL_JOINTS = 24
NUM_SMPL_VERTICES = 6890
NUM_BETAS = 10
SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
    "right_hand",
)
SMPL24_TO_J14 = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)
SMPL24_SPINE = 6  # spine2, the GT end of the relative alignment for 3DPW
GENDERS = ("neutral", "male", "female")

# Human3.6M
H36M_TO_J17 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10, 0, 7, 9)
H36M_TO_J14 = H36M_TO_J17[:14]
J24_TO_J17 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 14, 16, 17)
J24_TO_J14 = J24_TO_J17[:14]
H36M_S2D_TO_J14 = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 17)  # S_2D superset: jaw used as head
H36M_S2D_SPINE = 16
# Human3.6M's own 32-joint pose files -> the 24-joint superset above (SPIN's h36m preprocessing: h36m_idx, global_idx)
H36M32_PICK = (11, 6, 7, 8, 1, 2, 3, 12, 24, 14, 15, 17, 18, 19, 25, 26, 27)
H36M32_TO_SUPERSET = (14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6)
H36M_EVAL_CAMERA = "60457274"  # protocol 2 keeps this camera only
# 3DOH: rows of SPIN's 49-row keypoint array (25 + SMPL-24 index)
OH3D_TO_J14 = tuple(25 + j for j in SMPL24_TO_J14)
OH3D_SPINE = 25 + SMPL24_SPINE

# --------------------------------------------------------------------------------------------------------------
# OpenPose COCO-18 body model
COCO18_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)
NUM_COCO = len(COCO18_NAMES)
COCO_TO_J14 = (10, 9, 8, 11, 12, 13, 4, 3, 2, 5, 6, 7, 1, 0)
# OpenPose pseudo-spine = (mid-hip + 1.3 * neck) / 2.3, over J14 slots R hip, L hip, neck.
OP_SPINE_NECK_WEIGHT = 1.3

# Limbs (A, B) as 0-based COCO parts, and the PAF channel pair (x, y) of each (REFERENCE.md E.4).
OP_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)
OP_LIMB_PAF = (
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
    (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
)
OP_BOXSIZE = 368
OP_SCALE = 0.5
OP_STRIDE = 8
OP_PAD_VALUE = 128
OP_PEAK_THRESHOLD = 0.1
OP_PAF_THRESHOLD = 0.05
OP_PAF_SAMPLES = 10
OP_GAUSS_SIGMA = 3.0
OP_MIN_PARTS = 4
OP_MIN_MEAN_SCORE = 0.4
OP_SUBSET_WIDTH = 20  # 18 ids, total score, part count

# --------------------------------------------------------------------------------------------------------------
# meshConfidence classifiers
# Mean and *variance* (the original calls it STD; consumers take its square root) of ED over the original training
# set, in J14 order. Used by the original recipe's standardisation and the demo golden.
SP_OP_NORM_MEAN = (0.1573, 0.1397, 0.0827, 0.0832, 0.1371, 0.1484, 0.3628, 0.2000, 0.0986, 0.1022, 0.1731, 0.2975,
                   0.0620, 0.6292)
SP_OP_NORM_VAR = (0.0584, 0.0496, 0.0022, 0.0026, 0.0577, 0.0517, 0.3527, 0.1749, 0.0133, 0.0092, 0.1402, 0.2784,
                  0.0012, 0.7258)
# A mesh is "accurate" when every joint's SE is at most 0.1 normalised units (11.2 px).
ACCURATE_SE_THRESHOLD = 0.1
# Training filters of the original (SPEC-original §2.8).
TRAIN_MIN_CONF = 0.1  # hips and neck must be detected
TRAIN_MAX_SE = 1.0  # degenerate ground truth
# Placeholders for missing OpenPose parts (SPEC-original §1.6).
OP_MISSING_SELECT_PX = (112.0, 112.0)
OP_MISSING_OUTPUT_PX = (224.0, 224.0)

# --------------------------------------------------------------------------------------------------------------
# SMPL part segmentation (Meshcapade names) -> the J14 slots whose values colour that part. Looked up by NAME: the
# original keyed it by the JSON's key order (SPEC §6 #42).
PART_TO_J14 = {
    "rightHand": (6,), "rightUpLeg": (1, 2), "leftArm": (9, 10), "leftLeg": (4, 5), "leftToeBase": (5,),
    "leftFoot": (5,), "spine1": (9, 8), "spine2": (9, 8, 12), "leftShoulder": (9,), "rightShoulder": (8,),
    "rightFoot": (0,), "head": (13,), "rightArm": (8, 7), "leftHandIndex1": (11,), "rightLeg": (0, 1),
    "rightHandIndex1": (6,), "leftForeArm": (10, 11), "rightForeArm": (6, 7), "neck": (12,), "rightToeBase": (0,),
    "spine": (2, 3), "leftUpLeg": (3, 4), "leftHand": (11,), "hips": (2, 3),
}
