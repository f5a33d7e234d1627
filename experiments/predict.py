r"""Tags raw text with a model trained by experiments.train.

  ./launch.sh predict --model_dir=runs/conll --text="EU rejects German call"
  echo "Paris Hilton visited Paris ." | ./launch.sh predict --model_dir=runs/conll

Text is split on whitespace (punctuation should be separated, as in CoNLL);
each input line is one sentence. Prints `token TAG` lines, then the entity
spans found with conlleval's chunk rules.
"""

import sys

from absl import flags
import numpy as np

from experiments import common
from research import data as data_lib
from research import metrics
from research import model as model_lib
from research import train as train_lib
from research import vocab as vocab_lib
from research import workdir as workdir_lib
from research.errors import UserError

_MODEL_DIR = flags.DEFINE_string('model_dir', None,
                                 'The --workdir of an experiments.train run.')
_TEXT = flags.DEFINE_string('text', None, 'Text to tag (default: stdin).')


def tag_sentences(model_dir, lines):
  """Returns [(tokens, tags)] for each non-empty line of text."""
  params, vocab, tags, config = workdir_lib.load_model(model_dir)
  model_cfg = model_lib.ModelConfig(**config['model'])
  sentences = [data_lib.Sentence(tuple(line.split()), ('O',) * len(line.split()))
               for line in lines if line.split()]
  if not sentences:
    return []
  windows = vocab_lib.make_windows(sentences, vocab, tags, model_cfg.window)
  pred, _ = train_lib.predict(params, windows, model_cfg)
  names = np.asarray(tags, dtype=object)[pred]
  out, start = [], 0
  for s in sentences:
    out.append((s.tokens, list(names[start:start + len(s.tokens)])))
    start += len(s.tokens)
  return out


def main(_):
  if not _MODEL_DIR.value:
    raise UserError('pass --model_dir, the --workdir of an experiments.train '
                    'run')
  text = _TEXT.value if _TEXT.value is not None else sys.stdin.read()
  for tokens, tags in tag_sentences(_MODEL_DIR.value, text.splitlines()):
    for token, tag in zip(tokens, tags):
      print(f'{token}\t{tag}')
    spans = [f'[{" ".join(tokens[a:b])}]/{t}'
             for a, b, t in metrics.chunks(tags)]
    print('entities:', ' '.join(spans) if spans else '(none)')
    print()


if __name__ == '__main__':
  common.run(main)
