"""docs/derivations.md: every formula beside its hand-derived gradient, as
their docstrings state them, with links to the functions and the gradient
check's rows for each (written by `./launch.sh gradcheck`)."""

import inspect
import os
import pathlib

from research.formulas import chars
from research.formulas import crf
from research.formulas import dilated
from research.formulas import losses
from research.formulas import manual_grads
from research.formulas import model
from research.reports import render
from research.training import classifier
from research.training import sequence

_REPO = pathlib.Path(__file__).resolve().parents[2]

# (title, what it covers, the functions shown, the row-name prefixes that
# check them); the sections in the order of the decks.
SECTIONS = (
  (
    'Window classifiers',
    'The softmax and one-hidden-layer classifiers on a window vector x, and '
    'the window vector itself: the gradient w.r.t. each weight and x, split '
    'into the word and casing vectors of the window and scattered into L.',
    (model.window_vectors, model.class_scores, manual_grads.softmax_grads,
     manual_grads.hidden_grads, manual_grads.split_window_grad,
     manual_grads.scatter_rows),
    ('softmax/', 'hidden/'),
  ),
  (
    'Window objectives',
    'Cross-entropy and the multiclass max-margin on class scores, each with '
    'its error signal dJ/df.',
    (losses.cross_entropy, losses.cross_entropy_delta,
     losses.multiclass_margin, losses.multiclass_margin_delta),
    ('softmax/', 'hidden/'),
  ),
  (
    'L2 regularization',
    'lambda/2 sum ||theta||^2 over the chosen parameters, and lambda theta.',
    (losses.l2_penalty, manual_grads.l2_value_and_grads),
    ('l2/',),
  ),
  (
    'The training objective',
    'The mean data loss plus L2, with word vectors fine-tuned or frozen, and '
    'the training step\'s gradients (the --grad=manual hook).',
    (classifier.training_objective, manual_grads.objective_grads,
     classifier.batch_grads, manual_grads.batch_grads),
    ('objective/', 'batch_grads/', 'train.batch_grads/'),
  ),
  (
    'The window scorer',
    "The deck's scorer s = U . g(W x + b) with the window max-margin over "
    'corrupt windows.',
    (model.window_score, losses.window_margin, losses.window_margin_delta,
     manual_grads.scorer_grads),
    ('scorer/',),
  ),
  (
    'CRF and structured margin',
    'Sentence-level objectives over the window scores of a packed row of '
    'sentences: the forward algorithm and forward-backward, and the '
    'cost-augmented Viterbi.',
    (crf.crf_loss, crf.crf_grads, crf.struct_margin_loss,
     crf.struct_margin_grads),
    ('crf_grads', 'struct_margin_grads'),
  ),
  (
    'The sentence task',
    'Window scores of every word of packed sentence rows, through any '
    'objective, back to the dense weights and the gathered rows.',
    (sequence.batch_grads, manual_grads.sentence_batch_grads),
    ('sentence_batch_grads/',),
  ),
  (
    'Character CNN',
    'A convolution over each word\'s characters, max-pooled, and its '
    'backward pass.',
    (chars.char_features, chars.char_backward),
    ('char_cnn/',),
  ),
  (
    'Windows of windows',
    'Dilated convolutions (width 3, dilations 1, 2, 4, ...) over the hidden '
    'vectors of a packed row\'s words, masked at sentence edges and '
    'padding, residual, a block of them shared across repeats; the '
    'transposed gather of their backward pass. The sentence task\'s rows '
    'of the dilated model check it inside the whole model.',
    (dilated.neighbors, dilated.conv_layer, dilated.conv_layer_backward,
     dilated.gather_windows_backward, dilated.encode, dilated.encode_backward,
     manual_grads.dilated_backward),
    ('dilated/', 'sentence_batch_grads/dilated'),
  ),
)  # fmt: skip


def _link(fn, page_dir):
  """[module.function](relative/path.py#Lline) of a function."""
  path = pathlib.Path(inspect.getsourcefile(fn)).resolve()
  line = inspect.getsourcelines(fn)[1]
  rel = os.path.relpath(path, page_dir)
  where = path.relative_to(_REPO)
  return f'[`{fn.__module__}.{fn.__name__}`]({rel}#L{line}) ({where}:{line})'


def _rows_line(rows, prefixes):
  """How many gradient-check rows check a section, and their largest error."""
  mine = [d for f, d in rows if f.startswith(prefixes)]
  if not mine:
    return 'No gradient-check rows were run for this section.'
  failed = sum(not d.ok for d in mine)
  worst = max(d.max_rel for d in mine)
  verdict = 'all pass' if not failed else f'{failed} FAIL'
  return (
    f'Gradient check: {len(mine)} rows ({", ".join(prefixes)}...), '
    f'{verdict}; largest relative error {worst:.1e}.'
  )


def page(rows, path, seed, rtol):
  """Writes the page for the gradient check's `rows` into `path`."""
  path = pathlib.Path(path)
  failed = sum(not d.ok for _, d in rows)
  sections = [
    (
      'About this page',
      f'Written by `./launch.sh gradcheck` (seed {seed}, rtol {rtol:g}) from '
      'the docstrings of the functions it checks: each formula and its '
      'hand-derived gradient, a link to each, and the rows of the gradient '
      'check (float64, random problems away from the kinks, each '
      'hand-derived gradient against `jax.grad` of its formula) that cover '
      f'it. {len(rows)} rows, {len(rows) - failed} passed, {failed} failed. '
      'docs/design.md explains how these fit together.',
    )
  ]
  for title, about, functions, prefixes in SECTIONS:
    parts = [about, _rows_line(rows, prefixes)]
    for fn in functions:
      doc = inspect.getdoc(fn) or '(no docstring)'
      parts.append(f'{_link(fn, path.parent)}\n\n```text\n{doc}\n```')
    sections.append((title, '\n\n'.join(parts)))
  path.parent.mkdir(parents=True, exist_ok=True)
  render.write_report(path, 'Derivations', sections)
  return path
