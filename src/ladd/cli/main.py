"""The `ladd` program: the command groups, global options, and one line per error."""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from typing import Annotated

import torch
import torch.distributed as td
import typer
from pydantic import ValidationError
from typer._click.exceptions import MissingParameter, NoArgsIsHelpError, UsageError  # typer >= 0.29 carries its own click

from ladd.cli import cache, common, data, experiment, outputs, sre2l, stages
from ladd.core import logs
from ladd.core import dist
from ladd.core.errors import ArtifactError, ConfigError, LaddError, RunError
from ladd.core.progress import console


app = typer.Typer(
    name="ladd",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for group in (stages, sre2l, outputs):  # their commands at the top level: `ladd distill`, `ladd squeeze`, ...
    app.add_typer(group.app)
app.add_typer(experiment.app, name="experiment")
app.add_typer(data.app, name="data")
app.add_typer(cache.app, name="cache")


@app.callback()
def _global(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and results: no progress, no info lines.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also debug lines (resolved settings, cache hits) and tracebacks.")
    ] = False,
):
    """Label-centric dataset distillation: distill images, add LADD dense labels, evaluate fairly.

    Every command that writes a run folder or an artifact also keeps a log there (OUT/ladd.log, or
    ARTIFACT.log beside an artifact)."""
    if quiet and verbose:
        raise ConfigError("--quiet and --verbose contradict each other: give one")
    logs.setup(-1 if quiet else 1 if verbose else 0)


def _usage(e: UsageError) -> str:
    """Typer's own refusals (an unknown option, a value that does not parse or is out of range) as
    one line naming the option, with the range it takes."""
    param = getattr(e, "param", None)
    cause = e.__cause__
    if param is None or not getattr(param, "opts", None) or isinstance(e, MissingParameter):
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        return e.format_message() + hint
    name = "/".join(param.opts) if param.param_type_name == "option" else param.human_readable_name
    value = f" {cause.errors()[0]['input']}" if isinstance(cause, ValidationError) and cause.errors() else ""
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is not None and hi is not None:
        whole = isinstance(lo, int) and isinstance(hi, int)
        show = (lambda v: str(v)) if whole else (lambda v: f"{v:g}")
        return f"{name}{value} is not allowed: give a {'whole number' if whole else 'number'} from {show(lo)} to {show(hi)}"
    return f"invalid value for {name}{value}: {e.message.removeprefix('Value error, ')}"


@functools.cache
def _command():
    """The click command of `app`, built once (every command is registered at import), its path
    options checked as they are read (`common.check_paths`)."""
    command = typer.main.get_command(app)
    common.check_paths(command)
    return command


def _run(args: list[str]) -> int:
    """Run the command line and return its exit code. Invoked here rather than through typer's
    `main`, which turns Ctrl-C into a silent exit 130: the KeyboardInterrupt reaches `main`."""
    command = _command()
    try:
        with command.make_context("ladd", args) as ctx:
            command.invoke(ctx)
    except typer.Exit as e:  # --help, `ladd cache verify` finding a broken entry
        return e.exit_code
    return 0


def _interrupted(args: list[str]) -> str:
    """What to do after Ctrl-C: re-run, with --resume where the command has it, and with the run
    folder it wrote into when that was a default one (`ladd eval`'s students resume from it)."""
    command = _command()
    for word in args:  # down the command groups (`ladd experiment NAME`) to the command that ran
        if word not in getattr(command, "commands", {}):
            break
        command = command.commands[word]
    options = {o for p in getattr(command, "params", []) for o in p.opts}
    extra = ["--resume"] if "--resume" in options else []
    if "--out" in options and "--out" not in args and logs.current is not None and logs.current.name == "ladd.log":
        extra.append(f"--out {logs.current.parent}")
    return f"interrupted — re-run the same command{' with ' + ' '.join(extra) if extra else ''} to continue"


def main() -> None:
    dist.exit(_main())


def _main() -> int:
    """Run the command; its exit code (0, or an error's after one `error:` line)."""
    code = 0
    try:
        dist.init()
        from ladd.core import plugins

        plugins.load()  # third-party methods, datasets, models and protocols (entry points `ladd.plugins`)
        if dist.rank() > 0:  # under torchrun rank 0 prints the results; every rank prints its errors
            sys.stdout, console.quiet = open(os.devnull, "w"), True
        code = _run(sys.argv[1:])
        dist.finish()
    except KeyboardInterrupt:
        if dist.rank() == 0:
            print(f"\n{_interrupted(sys.argv[1:])}", file=sys.stderr)
        return 130
    except NoArgsIsHelpError:  # `ladd` or `ladd experiment` alone: the help is already printed
        return 2
    except UsageError as e:
        print(f"error: {_usage(e)}".replace("\n", " "), file=sys.stderr)
        return 2
    except LaddError as e:
        print(f"error: {dist.where()}{e}".replace("\n", " "), file=sys.stderr)
        return e.exit_code
    except td.DistError as e:  # a peer process of this torchrun job died or stopped answering
        print(
            f"error: {dist.where()}another process of this job stopped ({str(e).splitlines()[0][:200]}): "
            f"launch the same command again to continue from the last checkpoint (with --resume where the command has it)",
            file=sys.stderr,
        )
        return RunError.exit_code
    except ValidationError as e:
        err = e.errors()[0]
        print(f"error: invalid value for {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return ConfigError.exit_code
    except torch.OutOfMemoryError as e:  # at scale the commonest failure, and not a defect of ladd
        print(
            f"error: {dist.where()}{LaddError(f'out of GPU memory ({str(e).splitlines()[0][:160]})')}: set --micro-batch (the same "
            f"steps in less memory), lower --batch-size or --crops-per-step, use --precision bf16, or a smaller --resolution or model",
            file=sys.stderr,
        )
        return RunError.exit_code
    except OSError as e:  # unwritable --out, a file where a folder should be, a full disk
        what = f"{e.strerror or e}: {e.filename}" if e.filename else f"{e.strerror or e}"
        print(f"error: {LaddError(what)}", file=sys.stderr)  # one line, whatever the file name holds
        return ArtifactError.exit_code
    except Exception as e:  # a case ladd does not handle: one line here, the traceback in the run log
        if logs.level() <= logging.DEBUG:
            traceback.print_exc()
        where = f"the traceback is in {logs.current}" if logs.current else "run with --verbose for the traceback"
        print(f"error: {dist.where()}{LaddError(f'unexpected {type(e).__name__}: {e}')} ({where}; please report it)", file=sys.stderr)
        return LaddError.exit_code
    finally:
        dist.close()
    return code
