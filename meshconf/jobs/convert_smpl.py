"""`meshconf convert-smpl IN OUT.npz`: an official SMPL pickle -> a plain, pickle-free npz (no chumpy needed)."""

from __future__ import annotations


from ..errors import MeshconfError
from ..models.smpl_file import read_smpl_file, write_smpl_npz


def add_arguments(parser) -> None:
    parser.add_argument("input", help="SMPL model file (.pkl as distributed, or .npz)")
    parser.add_argument("output", help="output .npz")


def run(args) -> int:
    if not args.output.endswith(".npz"):
        raise MeshconfError(f"output must end in .npz, got {args.output}")
    data = read_smpl_file(args.input)
    write_smpl_npz(data, args.output)
    print(f"wrote {args.output}: {data.v_template.shape[0]} vertices, {data.f.shape[0]} faces, "
          f"{data.shapedirs.shape[-1]} shape components")
    return 0
