r"""Gathers run directories into one markdown page with tables and plots.

  ./launch.sh report --run_dirs=runs/sweep-20261122-101500,runs/conll \
      --output=runs/report.md

A directory with a report.md (sweep, window_margin, freeze_vs_finetune,
loop_vs_matrix) or a bench.md (bench) is included as it is, its plot links
rewritten to be relative to --output. A directory of experiments.train gets a
section made from result.json (per-type scores) and metrics.jsonl (a
learning-curve plot, written into that directory as curves.png). An existing
--output page is refused unless --overwrite.
"""

import os
import pathlib
import re

from absl import flags

from experiments import common
from experiments import reporting
from research import workdir as workdir_lib
from research.errors import UserError

_RUN_DIRS = flags.DEFINE_list('run_dirs', None, 'Run directories to gather.')
_OUTPUT = flags.DEFINE_string('output', 'runs/report.md',
                              'The markdown page to write.')


def _relink(markdown, source_dir, page_dir):
  """Rewrites ![](file) links so they resolve from the page's directory."""
  def fix(match):
    target = match.group(2)
    if '://' in target or os.path.isabs(target):
      return match.group(0)
    rel = os.path.relpath(source_dir / target, page_dir)
    return f'![{match.group(1)}]({rel})'
  return re.sub(r'!\[([^\]]*)\]\(([^)]+)\)', fix, markdown)


def train_section(run_dir):
  """Markdown for an experiments.train run: scores and a learning curve."""
  result = workdir_lib.read_json(run_dir / 'result.json')
  rows = []
  for split in ('dev', 'test'):
    if split not in result:
      continue
    r = result[split]
    rows.append([split, 'all', f'{r["precision"]:.2f}', f'{r["recall"]:.2f}',
                 f'{r["f1"]:.2f}', f'{r["accuracy"]:.2f}'])
    for t, s in sorted(r.get('per_type', {}).items()):
      rows.append([split, t, f'{s["precision"]:.2f}', f'{s["recall"]:.2f}',
                   f'{s["f1"]:.2f}', ''])
  body = reporting.markdown_table(
      ['split', 'type', 'precision', 'recall', 'F1', 'accuracy'], rows)
  body += (f'\n\n{result["train_windows_per_sec"]:,.0f} training windows/s, '
           f'{result["train_seconds"]:.1f}s training.')
  metrics_path = run_dir / 'metrics.jsonl'
  if metrics_path.is_file():
    curve = workdir_lib.read_jsonl(metrics_path)
    fig, (ax,) = reporting.figure()
    steps = [r['step'] for r in curve]
    ax.plot(steps, [100 - r['dev']['f1'] for r in curve], 'o-',
            color='tab:red', label='dev error (100 - F1)')
    if all('train' in r for r in curve):
      ax.plot(steps, [100 - r['train']['f1'] for r in curve], 'o-',
              color='tab:blue', label='train error (100 - F1)')
    ax.set_xlabel('training step')
    ax.set_ylabel('%')
    ax.legend()
    ax.grid(alpha=0.3)
    body += f'\n\n![]({reporting.save(fig, run_dir / "curves.png")})'
  return body


def main(_):
  if not _RUN_DIRS.value:
    raise UserError('pass --run_dirs=DIR[,DIR...], run directories of the '
                    'experiments')
  page = pathlib.Path(_OUTPUT.value)
  if page.exists() and not common.OVERWRITE.value:
    raise UserError(f'{page} exists; pass --output=ANOTHER.md, or '
                    '--overwrite to replace it')
  sections = []
  for name in _RUN_DIRS.value:
    run_dir = pathlib.Path(name)
    pages = [run_dir / n for n in ('report.md', 'bench.md')
             if (run_dir / n).is_file()]
    if pages:
      body = pages[0].read_text()
      body = re.sub(r'^# ', '### ', body, flags=re.M)
      body = re.sub(r'^## ', '#### ', body, flags=re.M)
    elif (run_dir / 'result.json').is_file():
      body = train_section(run_dir)
    else:
      raise UserError(f'{run_dir}: no report.md, bench.md or result.json; '
                      'pass the --workdir of a finished experiment')
    sections.append((str(run_dir), _relink(body, run_dir.resolve(),
                                           page.resolve().parent)))
  page.parent.mkdir(parents=True, exist_ok=True)
  reporting.write_report(page, 'Experiment report', sections)
  common.log(f'wrote {page} ({len(sections)} runs)')


if __name__ == '__main__':
  common.run(main)
