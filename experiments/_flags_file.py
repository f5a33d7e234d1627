"""flags.txt: the resolved flags of a run, written into its directory when it
is claimed, and compared with the running flags on --resume (before any data
are read). Not an entry point; experiments/_run.py calls `save`."""

from absl import flags

from research import files
from research.errors import UserError


def text(entry):
  """The resolved flags, headed by the entry point (a comment in a
  --flagfile)."""
  # Left out: absl's own flags (--verbosity, --pdb, ...), and where this run
  # was written: a run repeated with --flagfile=W/flags.txt names its own
  # --workdir and can never overwrite W by accident.
  # --resume is left out too: the resumed run's flags must equal these.
  lines = [f.serialize() for f in _written_flags()]
  return f'# ./launch.sh {entry}\n' + '\n'.join(lines) + '\n'


def _written_flags():
  """The flags flags.txt holds, in its order."""
  return [
    f
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
    if not module.startswith('absl')
    for f in sorted(module_flags, key=lambda f: f.name)
    if f.value is not None and f.name not in ('workdir', 'overwrite', 'resume')
  ]


def save(path, saved, entry, resume):
  """Writes the resolved flags into the run directory `path` (flags.txt);
  with `resume`, refuses flags that differ from those in `saved` (the run's
  flags.txt, wherever its process 0 wrote it)."""
  now_text = text(entry)
  if resume:
    # A flag this entry point no longer takes (in the flags.txt of a run
    # made before each took only its own) had its default: not compared.
    before = [x for x in saved.read_text().splitlines() if _taken(x)]
    # A flag added since the run was made is compared only when it is set
    # to other than its default (which the run trained with).
    named, defaults = {x.split('=')[0] for x in before}, _default_lines()
    now = [
      x
      for x in now_text.splitlines()
      if x.split('=')[0] in named or x not in defaults
    ]
    changed = sorted(
      {line.split('=')[0] for line in set(before) ^ set(now)} - {''}
    )
    if changed:
      raise UserError(
        f'--resume: {", ".join(changed)} differ from {saved}; resume with '
        f'the flags the run was started with (--flagfile={saved})'
      )
    return
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise files.fault(e) from None
  files.write_text(path / 'flags.txt', now_text)


def _default_lines():
  """The flags.txt line of every flag left at its default."""
  return {f.serialize() for f in _written_flags() if f.value == f.default}


def _taken(line):
  """Whether a flags.txt line sets a flag of this entry point (or is a
  comment)."""
  name = line.split('=')[0].lstrip('-')
  no = name.startswith('no') and name[2:] in flags.FLAGS
  return line.startswith('#') or name in flags.FLAGS or no
