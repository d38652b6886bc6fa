"""OpenPose COCO-18 body model: the network, reference-exact keypoint decoding, batched detection, typed people.

    model = load_body("body_pose_model.pth")
    candidate, subset = detect(model, image_bgr)           # exactly pytorch-openpose's Body(image_bgr)
    results = detect_batch(model, images)                  # the same for many (decoded on the model's device)
    for person in people(candidate, subset): ...
"""

from .batch import decode_batch  # noqa: F401
from .decoding import Decoded, decode, decode_full  # noqa: F401
from .detect import detect, detect_batch, detect_finish, detect_launch, forward, forward_tensors  # noqa: F401
from .network import BodyPoseModel, load_body  # noqa: F401
from .people import Person, people  # noqa: F401
from .preprocess import NetGeometry, geometry, preprocess  # noqa: F401
