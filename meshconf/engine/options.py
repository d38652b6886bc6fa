"""The options every model-running job shares (`demo`, `qualitative`, `extract`, `sensitivity image|dataset`),
declared once so that they read, default and check the same everywhere."""

from __future__ import annotations

from dataclasses import dataclass

from ..accel import COMPILE_MIN_ITEMS, COMPILE_POLICIES, compiled_parts
from ..errors import MeshconfError
from ..runtime import PRECISIONS


def add_model_options(parser, batch_default: int = 16, batch_help: str = "crops per forward pass",
                      precision: bool = True, gpu_batch: int | None = None) -> None:
    """`precision=False` for a job that chooses the precision itself (check-precision runs both). `gpu_batch`: the
    batch size when the models land on a GPU and the user gave none (`ModelOptions.batch_for`)."""
    group = parser.add_argument_group("models and hardware")
    group.add_argument("--data-dir", help="model files folder (default: $MESHCONF_DATA or ~/.cache/meshconf)")
    group.add_argument("--checkpoint", help="SPIN checkpoint (default: model_checkpoint.pt in the data folder)")
    group.add_argument("--device", default="auto",
                       help="auto (this process's GPU when CUDA is available, else the CPU), cpu, cuda or cuda:N "
                            "(default: %(default)s)")
    if precision:
        group.add_argument("--precision", default="float32", choices=PRECISIONS,
                           help="network precision; bfloat16 is about twice as fast on AMX/AVX512-BF16 CPUs and "
                                "GPUs, results labelled as such; check it on your images with `meshconf "
                                "check-precision` (default: %(default)s)")
    group.add_argument("--tf32", action="store_true",
                       help="allow TF32 on CUDA (faster, leaves the goldens' tolerances; recorded in reports)")
    group.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    group.add_argument("--compile", default="auto", choices=COMPILE_POLICIES,
                       help="compile the networks with frozen weights (torch.compile): 10-40 s once per input shape, "
                            "then 10-25%% faster forwards; auto compiles, for jobs of at least "
                            f"{COMPILE_MIN_ITEMS} crops, the networks that measured faster so (default: %(default)s)")
    group.add_argument("--offline", action="store_true",
                       help="do not download missing public model files (also: MESHCONF_OFFLINE=1)")
    group.add_argument("--no-progress", action="store_true",
                       help="no progress bars (they are also off when the output is not a terminal)")
    if gpu_batch is None:
        group.add_argument("--batch-size", type=int, default=batch_default,
                           help=f"{batch_help} (default: %(default)s)")
    else:
        group.add_argument("--batch-size", type=int, default=None,
                           help=f"{batch_help} (default: {batch_default}; {gpu_batch} on a GPU, where the networks "
                                f"need large batches to be busy)")
        parser.set_defaults(batch_defaults=(batch_default, gpu_batch))


def check_model_options(args) -> None:
    """Ranges, before any model loads."""
    if args.batch_size is not None and args.batch_size < 1:
        raise MeshconfError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise MeshconfError(f"--threads must be at least 1, got {args.threads}")


RENDER_RES = (32, 4096)  # px; 4096 renders take ~0.5 GB, 20000 took 12.5 GB


def check_render_res(value: int) -> None:
    """--render-res (demo, qualitative): the side of the square renders."""
    low, high = RENDER_RES
    if not low <= value <= high:
        raise MeshconfError(f"--render-res must be between {low} and {high} px, got {value}")


def check_accept_precision(value: float | None) -> None:
    """--accept-precision (demo, qualitative, check-precision): a precision of accepted meshes, strictly in (0, 1)."""
    if value is not None and not 0 < value < 1:
        raise MeshconfError(f"--accept-precision must be between 0 and 1, got {value}")


@dataclass(frozen=True)
class ModelOptions:
    """What `add_model_options` declares, typed: which model files, on which device, in which precision."""
    data_dir: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "float32"
    tf32: bool = False
    threads: int | None = None
    compile: str = "auto"
    offline: bool = False
    batch_size: int = 16
    progress: bool = True
    gpu_batch_size: int | None = None  # used instead of batch_size on a GPU (the user gave no --batch-size)

    @classmethod
    def from_args(cls, args) -> "ModelOptions":
        return cls(data_dir=args.data_dir, checkpoint=args.checkpoint, device=args.device,
                   precision=getattr(args, "precision", "float32"), tf32=args.tf32, threads=args.threads,
                   compile=getattr(args, "compile", "auto"), offline=args.offline,
                   batch_size=args.batch_size if args.batch_size is not None else args.batch_defaults[0],
                   gpu_batch_size=args.batch_defaults[1] if args.batch_size is None else None,
                   progress=not args.no_progress)

    def batch_for(self, device) -> int:
        """The batch size on `device`: the GPU default when the models are on a GPU and none was given."""
        on_gpu = str(device).startswith("cuda")  # "cuda", "cuda:1" or such a torch.device
        return self.gpu_batch_size if on_gpu and self.gpu_batch_size else self.batch_size

    def choice(self, items: int | None = None) -> dict:
        """The keyword arguments of `bundle.load_models` / `MeshConfidence`; `items` is how many crops the job
        will run through the networks (for `--compile auto`)."""
        return {"data_dir": self.data_dir, "checkpoint": self.checkpoint, "device": self.device,
                "precision": self.precision, "tf32": self.tf32, "threads": self.threads, "offline": self.offline,
                "compile": compiled_parts(self.compile, items, self.precision)}


def model_choice(args, items: int | None = None) -> dict:
    """`ModelOptions.from_args(args).choice(items)`."""
    return ModelOptions.from_args(args).choice(items)
