"""How every entry point runs: errors, exit codes, processes, run directory.

Not an entry point; the flags are experiments/_flags.py. `run(main)` runs
an entry point's main (absl.app.run) with the conventions below.

Exit codes, the same for every entry point:
  0    done (--help too).
  1    a check the command makes failed (gradcheck's rows), or a bug (a
       Python traceback).
  2    a user error, printed as one line `error: ...` on stderr: a flag's
       value or an unknown flag (absl's flag errors too), bad data or paths,
       a run directory in use or holding an earlier run, a training that
       diverged.
  130  interrupted (Ctrl-C, SIGINT): one line says where the run stopped
       and what --resume would do.

The library's errors name its own parameters, never flags: a UserError
message writes a parameter in backticks as Python would, `mesh=4x2`,
`lr`. `translate` (applied to every UserError printed here) writes each
backticked name that is a flag of the running entry point as that flag:
`--mesh=4x2`, `--lr`; a parameter whose flag is named otherwise is mapped
by PARAMS, or by the entry point's `run(main, page='output')`; any other
backticked name is left as it is.

The run directory (`workdir`) is claimed before any work starts
(research/workdir.py: one in use by another run is refused; one holding an
earlier run is refused unless --overwrite, which first moves the earlier
run into a new .previous-run-N/, or --resume). The resolved flags are
written into it at once (flags.txt, experiments/_flags_file.py), or, with
--resume, compared with those the run was started with: before any data are
read. A file system fault
(no space, no permission) is one line that says what the run had saved.
"""

import difflib
import logging as std_logging
import os
import pathlib
import re
import shutil
import signal
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax

from experiments import _flags_file
from research import errors
from research import files
from research import workdir as workdir_lib
from research.errors import UserError
from research.training import parallel

REPO = pathlib.Path(__file__).resolve().parents[1]

# Library parameter -> the flag that sets it, where the names differ.
PARAMS = {'gazetteer_file': 'gazetteer'}
# Set by experiments/_flags.py: functions that rewrite argv before it is
# parsed, and the names of the flags some entry point takes.
ARGV_FILTERS = []
SHARED_FLAGS = set()
_PARAM = re.compile(r'`([A-Za-z_]\w*)(=[^`]*)?`')
# What the run has reached, for the line printed when it is interrupted.
_state = {'workdir': None, 'checkpoints': None, 'progress': None}
_interrupts = errors.Interrupts()  # a Ctrl-C, even one Python dropped
_real_workdir = None  # the run's --workdir on a process other than 0


def _flag_value(name, default=None):
  return flags.FLAGS[name].value if name in flags.FLAGS else default


def _entry():
  return pathlib.Path(sys.argv[0]).stem


def translate(message):
  """Writes the backticked parameters of a library message as flags."""

  def as_flag(match):
    name = PARAMS.get(match.group(1), match.group(1))
    if name not in flags.FLAGS:
      return match.group(0)
    return f'--{name}{match.group(2) or ""}'

  return _PARAM.sub(as_flag, message)


def run(main, **params):
  """absl.app.run(main) with the exit codes and one-line errors above.
  params: library parameter -> flag name, for this entry point."""
  PARAMS.update(params)
  app.run(lambda argv: _guarded(main, argv), flags_parser=_parse_flags)


def _parse_flags(argv):
  """absl's flag parsing; a flag error is one line and exit 2."""
  entry = f'./launch.sh {_entry()}'
  try:
    for rewrite in ARGV_FILTERS:
      argv = rewrite(argv)
    return flags.FLAGS(argv)
  except flags.UnrecognizedFlagError as e:
    name = e.flagname
    if name not in SHARED_FLAGS and name.startswith('no'):
      name = name[2:]
    what = (
      'does not take it (it has no effect there)'
      if name in SHARED_FLAGS
      else 'has no such flag' + _did_you_mean(name)
    )
    _fail(f'--{e.flagname}: {entry} {what}; its flags: {entry} --help')
  except flags.Error as e:
    lines = [re.sub(r'^flag ', '', line) for line in str(e).splitlines()]
    _fail(f'{"; ".join(lines)} ({entry} --help)')
  except SystemExit as e:  # --help and its kin: usage was printed
    sys.exit(0 if e.code == 1 else e.code)


def _did_you_mean(name):
  """'; did you mean --x?' for the flag of this entry point closest to a
  mistyped `name` ('' when none is close)."""
  own = [
    f for f, flag in flags.FLAGS._flags().items()  # noqa: SLF001
    if not flag.name.startswith(('help', 'only_check')) and len(f) > 1
  ]  # fmt: skip
  close = difflib.get_close_matches(name, own, n=1, cutoff=0.75)
  return f' (did you mean --{close[0]}?)' if close else ''


def _fail(message):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _compilation_cache(path):
  """Points JAX's persistent compilation cache at `path` (every program,
  however quick to compile), unless JAX_COMPILATION_CACHE_DIR is set or
  path is empty. What runs is unchanged: a cached program is the one the
  compiler would make, keyed by its computation, shapes and options."""
  if not path or os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return
  jax.config.update('jax_compilation_cache_dir', str(path))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def backend():
  """Where a run ran, for its results: the platform, the device, jax's
  version and the matmul precision asked for ('default': the backend's own,
  TF32 on an NVIDIA GPU, bfloat16 passes on a TPU)."""
  return {
    'platform': jax.default_backend(),
    'device': str(jax.devices()[0].device_kind),
    'jax': jax.__version__,
    'matmul_precision': _flag_value('matmul_precision', 'default'),
  }


def _guarded(main, argv):
  # Progress is printed as lines of our own; libraries' info logs (orbax
  # logs each checkpoint) are left out.
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_logger().addFilter(errors.not_an_interrupt)
  std_logging.getLogger('asyncio').addFilter(errors.not_an_interrupt)
  if len(argv) > 1:
    _fail(
      f'unexpected arguments {" ".join(argv[1:])!r}; flags are written '
      '--name=value'
    )
  _compilation_cache(_flag_value('compilation_cache'))
  _interrupts.install()
  precision = _flag_value('matmul_precision', 'default')
  if precision != 'default':
    jax.config.update('jax_default_matmul_precision', precision)
  try:
    _start_processes()
    parallel.parse(_flag_value('mesh', 'auto'))  # refused before any work
    return main(argv)
  except files.Fault as e:
    _fail(translate(str(e)) + _what_was_saved(e))
  except OSError as e:  # a file the library writes without files.py
    _fail(translate(str(files.fault(e))) + _what_was_saved(files.fault(e)))
  except UserError as e:
    workdir_lib.release_unused(written=('flags.txt',))
    _fail(translate(str(e)))
  except KeyboardInterrupt:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # one line, whatever follows
    print(_interrupted(), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # Straight out: an interpreter torn down after an interrupt may end by
    # the signal itself (-2) rather than the documented 130.
    os._exit(130)


def _what_was_saved(fault):
  """After a file system fault: what the run had saved, and how to go on
  once the cause is fixed."""
  path = _state['workdir']
  if path is None or not (pathlib.Path(path) / 'flags.txt').is_file():
    return ''
  fix = 'free space' if fault.full else 'fix that'
  if not _state['checkpoints'] or not _flag_value('checkpoints', True):
    return f'; {fix}, then run it again'
  where = _newest_checkpoints(path)
  if not where:
    return (
      f'; no checkpoint saved yet in {path}; {fix}, then the same command '
      'with --resume starts it again'
    )
  return (
    f'; saved in {path}: checkpoint {where}; {fix}, then the same command '
    'with --resume continues from there'
  )


def _interrupted():
  """The line printed on SIGINT: where the run stopped, what --resume does."""
  line = 'interrupted'
  if _state['progress']:
    line += f' (last progress line: {_state["progress"]!r})'
  path = _state['workdir']
  if path is None:
    return line
  line += f'; {path}'
  if _state['checkpoints'] is None:
    return line + f': ./launch.sh {_entry()} does not checkpoint; run it again'
  if not _state['checkpoints']:
    return line + ': no checkpoints (--nocheckpoints); nothing to resume'
  where = _newest_checkpoints(path)
  if not where:
    return line + ': no checkpoint yet: --resume would start from step 0'
  return (
    line + f': newest checkpoint {where}; the same command with --resume '
    'continues from there'
  )


def _newest_checkpoints(workdir):
  """'step N[ of SUB-RUN], ...' of the run's newest complete checkpoints
  ('' when there is none)."""
  steps = _checkpoint_steps(pathlib.Path(workdir) / 'checkpoints')
  return ', '.join(
    f'step {step}' + (f' of {name}' if name else '')
    for name, step in sorted(steps.items())
  )


def _checkpoint_steps(directory):
  """{sub-run ('' for the run itself): its newest complete checkpoint}."""
  steps = {}
  # Orbax writes a checkpoint under a temporary name and renames it to its
  # step when complete.
  for parent, dirs, _ in os.walk(directory):
    done = [int(d) for d in dirs if d.isdigit()]
    if done:
      name = os.path.relpath(parent, directory)
      steps['' if name == '.' else name] = max(done)
      dirs.clear()
  return steps


def _start_processes():
  """jax.distributed.initialize when asked (before anything touches JAX)."""
  names = ('coordinator', 'num_processes', 'process_id')
  given = [f for f in names if _flag_value(f) is not None]
  if given and len(given) < 3:
    raise UserError(
      '--coordinator, --num_processes and --process_id go together; pass '
      'all three (or --distributed for the cluster to say)'
    )
  if given or _flag_value('distributed', False):
    parallel.initialize(*(_flag_value(f) for f in names))


def workdir(name, checkpoints=False):
  """--workdir (default runs/<name>-<time>), claimed before any work starts
  (research/workdir.py's claim), its flags written (or compared, with
  --resume) at once. checkpoints: whether this entry point checkpoints."""
  resume = _flag_value('resume', False)
  if resume and not _flag_value('checkpoints', True):
    raise UserError('--resume needs checkpoints; drop --nocheckpoints')
  given = _flag_value('workdir')
  moved = []
  path = given or str(
    REPO / 'runs' / f'{name}-{time.strftime("%Y%m%d-%H%M%S")}'
  )
  if given is None and jax.process_count() > 1:
    raise UserError('several processes write one run: pass its --workdir')
  if jax.process_index() != 0:
    # Results are written by process 0; the others write into a scratch
    # directory of their own, thrown away.
    global _real_workdir
    _real_workdir = pathlib.Path(path)
    claimed = pathlib.Path(tempfile.mkdtemp(prefix=f'{name}-process-'))
  else:
    claimed = workdir_lib.claim(
      path, _flag_value('overwrite', False), resume, log=moved.append
    )
  _state['workdir'] = path
  if checkpoints:
    _state['checkpoints'] = _flag_value('checkpoints', True)
  _flags_file.save(
    claimed,
    pathlib.Path(_real_workdir or claimed) / 'flags.txt',
    _entry(),
    _flag_value('resume', False),
  )
  for line in moved:  # where an earlier run went, once the run is set up
    log(line)
  return claimed


def checkpointer(path):
  """The run's research.training.checkpoint.Checkpointer (None with
  --nocheckpoints). A new run (not --resume) starts from no checkpoint."""
  from research.training import checkpoint  # noqa: PLC0415 (orbax loads slowly)

  resume = _flag_value('resume', False)
  # Every process checkpoints its shards into the run's own directory.
  directory = pathlib.Path(_real_workdir or path) / 'checkpoints'
  if not resume and directory.exists() and jax.process_index() == 0:
    shutil.rmtree(directory)
  if not _flag_value('checkpoints', True):
    if resume:
      raise UserError('--resume needs checkpoints; drop --nocheckpoints')
    return None
  return checkpoint.Checkpointer(
    directory,
    _flag_value('checkpoint_every', 0),
    _flag_value('keep_checkpoints', 3),
    resume=resume,
    min_seconds=_flag_value('checkpoint_seconds', 0.0),
    log=log,
  )


def log(line):
  """A progress line (from process 0 only, when several train together)."""
  _interrupts.check()
  if jax.process_index() == 0:
    print(line, flush=True)
  last = str(line).strip().splitlines()
  if last:
    _state['progress'] = last[-1]
