"""The `uprez` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from engine import __version__
from engine.params import Param
from engine.settings import BUILTIN_MODEL, HIGH_DETAIL_PROMPT, MEMORY_CHOICES, MEMORY_HELP, UpscaleSettings

EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 1, 2, 130


def _flag_type(name: str, param: Param) -> Callable[[str], Any]:
    """argparse's `type` for a number field: the word as a number, or the field's own message."""

    def parse(text: str) -> Any:
        try:
            return param.parse_text(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per UpscaleSettings field, made from its row of the field table (engine.params): --tile-size
    for tile_size, its help, metavar, choices and default; the values reach `settings_from_args`."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for item in fields(UpscaleSettings):
        param: Param = item.metadata["param"]
        if not param.cli:
            continue
        target = parser if param.group is None else groups.setdefault(param.group,
                                                                       parser.add_argument_group(param.group))
        options: dict[str, Any] = {"dest": item.name, "default": item.default, "help": param.help}
        if param.metavar:
            options["metavar"] = param.metavar
        if param.kind == "flag":
            options["action"] = argparse.BooleanOptionalAction
        elif param.kind == "choice":
            options["choices"] = param.choices
        elif param.kind in ("number", "whole"):
            options["type"] = _flag_type(item.name, param)
        target.add_argument(*param.aliases, "--" + item.name.replace("_", "-"), **options)


def settings_from_args(args: argparse.Namespace) -> UpscaleSettings:
    """The job's settings from the flags `add_setting_flags` made (--high-detail adds to the prompt)."""
    values = {item.name: getattr(args, item.name) for item in fields(UpscaleSettings)}
    values["prompt"] = ", ".join(p for p in (args.prompt, HIGH_DETAIL_PROMPT if args.high_detail else "") if p)
    return UpscaleSettings(**values)


class _AppendTuple(argparse.Action):
    """argparse's append into a tuple, so that no flag given equals the settings' default `()`."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 - argparse's
        setattr(namespace, self.dest, (*getattr(namespace, self.dest, ()), values))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uprez", description="AI upscaling with flow-matching models.")
    parser.add_argument("--version", action="version", version=f"uprez {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("upscale", help="upscale an image file, or every image in a folder")
    up.add_argument("input", type=Path, help="an image (PNG, JPEG, WebP, TIFF) or a folder of images")
    up.add_argument("-o", "--output", type=Path, required=True, help="output file (or folder for a folder)")
    up.add_argument("-m", "--model", default=BUILTIN_MODEL,
                    help="builtin (the default: Uprez's own small model), a diffusers folder, a Hugging Face "
                         "repo id, a transformer .safetensors (full precision or fp8) or .gguf file, or an upscale "
                         "model (.pth/.safetensors: ESRGAN, SwinIR, SPAN, DAT, ...) to run on its own")
    # Not from the field table (a list, given once per LoRA); the settings' `loras` row checks the values.
    up.add_argument("--lora", action=_AppendTuple, default=(), dest="loras", metavar="PATH[:WEIGHT]",
                    help="apply a LoRA to the flow model (repeatable): a .safetensors file or a name in the LoRA "
                         "folders (ComfyUI models/loras, <config>/loras); WEIGHT 1 = as trained, 0 = off")
    up.add_argument("--base", help="VAE and text encoders (folder or repo id, on this machine) for a .safetensors "
                    "or .gguf transformer; default: a model of its family found on disk")
    up.add_argument("--quantize", choices=("nf4", "int8"),
                    help="quantize the transformer with bitsandbytes on loading (needs a CUDA GPU)")
    up.add_argument("--high-detail", action="store_true", help="add a short 'high detail' prompt")
    add_setting_flags(up)
    up.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    up.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    up.add_argument("--offload", action="store_true", help="keep model parts in RAM until used (less VRAM)")
    up.add_argument("--memory", choices=MEMORY_CHOICES, help=MEMORY_HELP)
    up.add_argument("--max-memory", type=float, metavar="GIB",
                    help="refuse jobs estimated to need more than this (default: what is free)")
    up.add_argument("--mask", type=Path, help="grey image, same size as the input: white = upscale with the "
                    "model, black = plain Lanczos; soft edges blend")
    up.add_argument("--feather", type=float, default=0.0, metavar="PX",
                    help="with --mask: soften the mask's edge by a Gaussian of this many input pixels")
    up.add_argument("--region-only", action="store_true", help="with --mask: output RGBA with the mask as alpha")
    up.add_argument("--frame", type=int, metavar="N",
                    help="for an animated GIF/WebP/PNG or a multi-page TIFF: upscale frame (page) N, 1 = the first")
    up.add_argument("--strip-metadata", action="store_true",
                    help="write no EXIF, XMP or DPI (the colour profile stays: the pixels need it)")
    up.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_cluster_flags(up)
    _add_serve(commands)
    from engine.models.cli import add_models_parser

    add_models_parser(commands)
    from engine.server.tokens_cli import add_tokens_parser

    add_tokens_parser(commands)
    gui = commands.add_parser("gui", help="open the desktop window (needs PyQt6: pip install 'uprez[gui]')")
    gui.add_argument("image", nargs="?", help="an image to open")
    return parser


def _run_gui(args: argparse.Namespace) -> int:
    return gui_main([args.image] if args.image else [])


def gui_main(argv: list[str] | None = None) -> int:
    """`uprez-gui` and `uprez gui`: the desktop window, or one line saying what to install when PyQt6 is missing."""
    argv = sys.argv[1:] if argv is None else argv
    try:  # PyQt6 is an optional extra: the rest of the command line works without it
        from ui.app import main as window_main
    except ImportError as exc:
        if (exc.name or "").startswith("PyQt6"):
            print(f"uprez: the desktop window needs PyQt6 ({exc}); install it with: pip install 'uprez[gui]'",
                  file=sys.stderr)
        else:  # e.g. an install made before ui/ existed, or a system library PyQt6 needs
            print(f"uprez: cannot load the desktop window ({exc}); reinstall Uprez with: pip install 'uprez[gui]'",
                  file=sys.stderr)
        return EXIT_ERROR
    return window_main(argv)


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="ADDRESS", help="run the model on a Ray cluster's workers: its address, "
                        "or auto for a Ray on this machine with one worker per GPU (needs pip install "
                        "'uprez[cluster]'; docs/cluster.md)")
    parser.add_argument("--cluster-workers", type=int, metavar="N", help="with --cluster: this many workers (CPU "
                        "workers where there is no GPU)")


def _add_serve(commands: argparse._SubParsersAction) -> None:
    from engine.lora.cli import add_train_parser
    from engine.server.config import DEFAULT_HOST, DEFAULT_PORT

    add_train_parser(commands)
    serve = commands.add_parser("serve", help="run the local engine server the editor bridges talk to",
                                description="Run the local engine server (protocol: docs/protocol.md). Limits "
                                "default to the environment (UPREZ_MAX_UPLOAD_MB, UPREZ_MAX_PIXELS, "
                                "UPREZ_MAX_OUTPUT_PIXELS, UPREZ_MODEL_DIRS), then to built-in values.")
    serve.add_argument("--host", default=None,
                       help=f"address to listen on (default {DEFAULT_HOST}: this machine only; with --remote 0.0.0.0); "
                            "plain HTTP on any other address is refused unless --insecure")
    serve.add_argument("--remote", action="store_true",
                       help="serve other machines over HTTPS with named tokens (`uprez tokens add NAME`); see "
                            "docs/remote.md")
    serve.add_argument("--cert", type=Path, metavar="PEM", help="with --remote: your own certificate (default: one "
                       "the engine makes at first start and keeps in its config folder)")
    serve.add_argument("--key", type=Path, metavar="PEM", help="the private key of --cert (unencrypted PEM)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow plain HTTP on a network address (only behind a TLS proxy or a private link)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 = any free port "
                       "(clients find it in engine.json in the config folder)")
    serve.add_argument("-m", "--model", default=BUILTIN_MODEL,
                       help="model for jobs that name none, loaded at start (default: builtin)")
    serve.add_argument("--base", help="VAE and text encoders for a .safetensors or .gguf transformer")
    serve.add_argument("--quantize", choices=("nf4", "int8"),
                       help="quantize transformers with bitsandbytes on loading (needs a CUDA GPU)")
    serve.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    serve.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    serve.add_argument("--offload", action="store_true", help="keep model parts in RAM until used (less VRAM)")
    serve.add_argument("--memory", choices=MEMORY_CHOICES, help=MEMORY_HELP)
    serve.add_argument("--max-memory", type=float, metavar="GIB", help="refuse jobs estimated to need more")
    serve.add_argument("--model-dir", action="append", type=Path, default=[], metavar="DIR",
                       help="folder whose model folders and .safetensors files GET /v1/models lists (repeatable)")
    serve.add_argument("--queue-size", type=int, default=8, help="jobs that may wait behind the running one "
                       "(default 8); more are refused with 429")
    serve.add_argument("--result-ttl", type=float, default=600.0, metavar="SECONDS",
                       help="how long a finished job's result is kept (default 600)")
    serve.add_argument("--max-upload-mb", type=float, help="largest request body (default 512)")
    serve.add_argument("--max-pixels", type=int, help="largest input, width x height (default 67108864)")
    serve.add_argument("--max-output-pixels", type=int, help="largest output, width x height (default 268435456)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="also accept this Host header name (for a server reached by name, e.g. via a proxy)")
    serve.add_argument("--unload-after", type=float, metavar="SECONDS",
                       help="free the loaded model after this long with no job (default: UPREZ_UNLOAD_AFTER, "
                            "unload_after in bridge.json, else 300; 0 = never); the next job loads it again")
    serve.add_argument("--exit-after", type=float, metavar="SECONDS",
                       help="exit after this long with no job (default: never; an engine the window or an editor "
                            "started on demand: UPREZ_EXIT_AFTER, exit_after in bridge.json, else 1200)")
    _add_cluster_flags(serve)


def _run_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engine.server import Limits, ServerConfig, serve
    from engine.server.idle import idle_policy
    from plugin.uprez_client.protocol import DEFAULT_HOST

    if args.quantize:  # refuse now, not on every job: bitsandbytes needs CUDA
        from engine.backends.loader import resolve_device
        from engine.backends.quantized import bnb_config

        bnb_config(args.quantize, torch_dtype=None, device=resolve_device(args.device))
    host = args.host or ("0.0.0.0" if args.remote else DEFAULT_HOST)
    config = ServerConfig.from_env(
        host=host, port=args.port, model=args.model, base=args.base, quantize=args.quantize,
        device=args.device, dtype=args.dtype, offload=args.offload, memory=args.memory,
        max_memory=int(args.max_memory * 2**30) if args.max_memory is not None else None,
        model_dirs=tuple(args.model_dir), queue_size=args.queue_size, result_ttl=args.result_ttl,
        allowed_hosts=tuple(args.allow_host), remote=args.remote, cert_file=args.cert, key_file=args.key,
        insecure=args.insecure, cluster=args.cluster, cluster_workers=args.cluster_workers,
    )
    given = {"max_upload_bytes": None if args.max_upload_mb is None else int(args.max_upload_mb * 2**20),
             "max_pixels": args.max_pixels, "max_output_pixels": args.max_output_pixels}
    limits: Limits = replace(config.limits, **{k: v for k, v in given.items() if v is not None})
    if args.memory is not None:  # a mode this device lacks is refused before the server starts
        from engine.backends.loader import resolve_device
        from engine.memory_modes import check_mode

        check_mode(args.memory, resolve_device(args.device))
    idle = idle_policy(config.config_dir, args.unload_after, args.exit_after)
    try:
        serve(replace(config, limits=limits, idle=idle))
    except OSError as exc:  # the port is taken, or the address is not one of this machine's
        print(f"uprez: cannot listen on {host}:{args.port} ({exc.strerror or exc}); is another engine "
              "running? choose another --port", file=sys.stderr)
        return EXIT_ERROR
    # Stopped, and engine.json is gone. What is left is the interpreter's teardown, which garbage-collects every
    # loaded model and library object (seconds on a busy machine) while the process still looks alive to whoever
    # waits for it to go (the window's parent watch, a service manager). Nothing is pending: leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _jobs(source: Path, output: Path) -> Iterator[tuple[Path, Path]]:
    from engine.imagefile import READABLE

    if source.is_dir():
        for path in sorted(source.iterdir()):
            if path.is_file() and path.suffix.lower() in READABLE:
                yield path, output / path.name
    else:
        yield source, output


def _plan_outputs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    from engine.errors import InvalidInput

    if not args.input.exists():
        raise InvalidInput(f"input not found: {args.input}")
    if args.input.is_dir() and args.output.exists() and not args.output.is_dir():
        raise InvalidInput(f"the input is a folder, so the output must be a folder; {args.output} is a file")
    jobs = list(_jobs(args.input, args.output))
    if not jobs:
        raise InvalidInput(f"no images found in {args.input}")
    for source, target in jobs:
        if target.resolve() == source.resolve():
            raise InvalidInput(f"refusing to write the result over its own input {source}; choose another -o")
        if target.exists() and not args.overwrite:
            raise InvalidInput(f"{target} exists; choose another -o or pass --overwrite")
    return jobs


def _upscale_sr(run, model, tile_size, pixels, settings, *, on_progress, cancel, mask, region_only, feather,
                **_ignored):  # noqa: ANN001, ANN003, ANN202 - the flow call's shape, for one loop in _run_upscale
    return run(pixels, model, scale=settings.scale, mask=mask, region_only=region_only, feather=feather,
               tile_size=tile_size, on_progress=on_progress, cancel=cancel)


def _loras(texts: list[str]) -> tuple[str, ...]:
    """--lora values with names found in the LoRA folders, each as PATH:WEIGHT."""
    from engine.lora.find import resolve_lora
    from engine.server.config import uprez_config_dir

    return tuple(resolve_lora(text, uprez_config_dir()) for text in texts)


def _run_upscale(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.api import upscale as flow_upscale
    from engine.backends.cache import load_spec
    from engine.errors import InvalidInput, UprezError
    from engine.imagefile import read_image, read_photo, write_image
    from engine.progress import Cancelled, CancelToken, ProgressEvent
    from engine.settings import ModelSpec

    settings = settings_from_args(args)
    if settings.loras:  # names in the LoRA folders become paths
        from dataclasses import replace

        settings = replace(settings, loras=_loras(list(settings.loras)))
    jobs = _plan_outputs(args)
    if args.region_only and args.mask is None:
        raise InvalidInput("--region-only needs --mask")
    if args.feather and args.mask is None:
        raise InvalidInput("--feather needs --mask")
    mask = read_image(args.mask) if args.mask is not None else None
    upscale, backend = flow_upscale, None
    first = read_photo(jobs[0][0], frame=args.frame)  # a bad file should fail before a model load of many seconds
    if args.cluster is not None:  # the images go to a Ray cluster's model workers (engine/cluster, docs/cluster.md)
        from engine.cluster.batch import run_from_args

        return run_from_args(args, settings, jobs, mask)
    from engine.sr.find import sr_model_path

    sr_path = sr_model_path(args.model)
    if sr_path is not None:  # an upscale model runs on its own (engine.sr)
        from functools import partial

        from engine.sr.load import get_sr_model
        from engine.sr.upscale import upscale_sr

        if args.upsampler:
            raise InvalidInput("--upsampler goes with a flow model; --model is already an upscale model")
        if settings.loras:
            raise InvalidInput("--lora goes with a flow model (FLUX, SD3, Qwen-Image, Z-Image); --model is an "
                               "upscale model, which takes no LoRAs")
        sr_model = get_sr_model(sr_path, device=args.device, dtype=args.dtype)
        upscale = partial(_upscale_sr, upscale_sr, sr_model, args.tile_size)
    else:
        if settings.loras:  # a missing file or another family's LoRA fails before the model loads
            from engine.lora.apply import check_loras, source_family
            from engine.lora.spec import parse_loras

            check_loras(parse_loras(settings.loras), source_family(args.model), args.model)
        backend = load_spec(ModelSpec(args.model, device=args.device, dtype=args.dtype, offload=args.offload,
                                        base=args.base, memory=args.memory, quantize=args.quantize))
        if not args.quiet and backend.device.type != "cpu" and hasattr(backend, "memory_mode"):
            from engine.memory_modes import describe

            choice = describe(backend.memory_mode, args.memory or "auto", backend.memory_plan, backend.memory_free)
            print(f"uprez: {choice}", file=sys.stderr)
    max_memory = int(args.max_memory * 2**30) if args.max_memory is not None else None
    cancel = CancelToken()

    def on_interrupt(_signum: int, _frame: object) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\ncancelling within a second or so (Ctrl-C again to quit at once)", file=sys.stderr)

    failed: list[Path] = []
    written: list[Path] = []
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        for index, (source, target) in enumerate(jobs, 1):
            label = f"[{index}/{len(jobs)}] {source.name}" if len(jobs) > 1 else source.name
            try:
                photo = first if index == 1 else read_photo(source, frame=args.frame)
            except InvalidInput as exc:
                failed.append(source)  # one bad file in a folder should not stop the batch
                print(f"uprez: skipped: {exc}", file=sys.stderr)
                continue
            with tqdm(total=1.0, desc=label, disable=args.quiet, file=sys.stderr,
                      bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]") as bar:

                def on_progress(event: ProgressEvent, bar: tqdm = bar, label: str = label) -> None:
                    # What runs now ("stage 2/2: decoding tile 7/30"), padded so a shorter text leaves no tail.
                    bar.set_description_str(f"{label} {event.phase:<32}", refresh=False)
                    bar.update(event.fraction - bar.n)

                result = upscale(photo.pixels, settings, backend=backend if upscale is flow_upscale else None,
                                 on_progress=on_progress, cancel=cancel,
                                 max_memory=max_memory, mask=mask, region_only=args.region_only,
                                 feather=args.feather, icc_profile=photo.meta.icc)
            write_image(target, result, photo.meta.stripped() if args.strip_metadata else photo.meta)
            written.append(target)
            print(f"wrote {target} ({result.shape[1]}x{result.shape[0]})", file=sys.stderr)
    except (Cancelled, KeyboardInterrupt):
        if not written:
            raise  # main() says nothing was written, which is then true
        print(f"uprez: cancelled; {_batch_summary(jobs, written)}", file=sys.stderr)
        return EXIT_CANCELLED
    except UprezError as exc:
        if not written:
            raise
        print(f"uprez: {exc}; {_batch_summary(jobs, written)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, InvalidInput) else EXIT_ERROR
    finally:
        signal.signal(signal.SIGINT, previous)
    if failed:
        print(f"uprez: {len(failed)} of {len(jobs)} images could not be read ({_names(failed)}); "
              f"{_batch_summary(jobs, written)}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _names(paths: list[Path], most: int = 8) -> str:
    shown = ", ".join(path.name for path in paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _batch_summary(jobs: list[tuple[Path, Path]], written: list[Path]) -> str:
    """What a batch that stopped or skipped left behind: which outputs exist, which inputs have none."""
    done = set(written)
    missing = [source for source, target in jobs if target not in done]
    text = f"wrote {len(written)} of {len(jobs)}" + (f" ({_names(written)})" if written else "")
    return text + (f"; not written: {_names(missing)}" if missing else "")


def main(argv: list[str] | None = None) -> int:
    from engine.allocator import tune_allocator
    from engine.errors import InvalidInput, UprezError

    tune_allocator()  # before any tensor: upscale and serve reuse freed buffers instead of faulting pages in
    from engine.progress import Cancelled

    args = build_parser().parse_args(argv)
    try:
        if args.command == "upscale":
            return _run_upscale(args)
        if args.command == "serve":
            return _run_serve(args)
        if args.command == "gui":
            return _run_gui(args)
        if args.command == "train-lora":
            from engine.lora.cli import run_train

            return run_train(args)
        if args.command == "models":
            from engine.models.cli import run_models

            return run_models(args)
        if args.command == "tokens":
            from engine.server.tokens_cli import run_tokens

            return run_tokens(args)
    except Cancelled:
        print("uprez: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("uprez: interrupted; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except InvalidInput as exc:
        print(f"uprez: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UprezError as exc:
        print(f"uprez: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
