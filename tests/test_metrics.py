"""Tests for research.evaluation.metrics: hand-checked conlleval cases, a
literal port of conlleval's streaming counts, and agreement with seqeval's
default mode."""

import json
import random
import re
import warnings

import numpy as np
import pytest
from seqeval.metrics import classification_report
from seqeval.metrics import f1_score
from seqeval.metrics import precision_score
from seqeval.metrics import recall_score
from seqeval.metrics.sequence_labeling import get_entities

from research.data import tagschemes
from research.evaluation import metrics

# --- Literal ports of conlleval, line by line, to check metrics against. ---


def _perl_split(tag):
  """conlleval.pl 2004-01-26: prefix before the first hyphen, type after."""
  match = re.match(r'^([^-]*)-(.*)$', tag)
  return (match.group(1), match.group(2)) if match else (tag, '')


# fmt: off
def _perl_end_of_chunk(prev_tag, tag, prev_type, type_):
  """endOfChunk of the official conlleval.pl (2004-01-26): no S rules."""
  chunk_end = False
  if prev_tag == 'B' and tag == 'B': chunk_end = True
  if prev_tag == 'B' and tag == 'O': chunk_end = True
  if prev_tag == 'I' and tag == 'B': chunk_end = True
  if prev_tag == 'I' and tag == 'O': chunk_end = True
  if prev_tag == 'E' and tag == 'E': chunk_end = True
  if prev_tag == 'E' and tag == 'I': chunk_end = True
  if prev_tag == 'E' and tag == 'O': chunk_end = True
  if prev_tag == 'I' and tag == 'O': chunk_end = True
  if prev_tag != 'O' and prev_tag != '.' and prev_type != type_:
    chunk_end = True
  if prev_tag == ']': chunk_end = True
  if prev_tag == '[': chunk_end = True
  return chunk_end


def _perl_start_of_chunk(prev_tag, tag, prev_type, type_):
  """startOfChunk of the official conlleval.pl (2004-01-26): no S rules."""
  chunk_start = False
  if prev_tag == 'B' and tag == 'B': chunk_start = True
  if prev_tag == 'I' and tag == 'B': chunk_start = True
  if prev_tag == 'O' and tag == 'B': chunk_start = True
  if prev_tag == 'O' and tag == 'I': chunk_start = True
  if prev_tag == 'E' and tag == 'E': chunk_start = True
  if prev_tag == 'E' and tag == 'I': chunk_start = True
  if prev_tag == 'O' and tag == 'E': chunk_start = True
  if prev_tag == 'O' and tag == 'I': chunk_start = True
  if tag != 'O' and tag != '.' and prev_type != type_:
    chunk_start = True
  if tag == '[': chunk_start = True
  if tag == ']': chunk_start = True
  return chunk_start


def _iobes_end_of_chunk(prev_tag, tag, prev_type, type_):
  """endOfChunk of the IOBES-aware Python port conlleval.py (and seqeval)."""
  chunk_end = False
  if prev_tag == 'E': chunk_end = True
  if prev_tag == 'S': chunk_end = True
  if prev_tag == 'B' and tag == 'B': chunk_end = True
  if prev_tag == 'B' and tag == 'S': chunk_end = True
  if prev_tag == 'B' and tag == 'O': chunk_end = True
  if prev_tag == 'I' and tag == 'B': chunk_end = True
  if prev_tag == 'I' and tag == 'S': chunk_end = True
  if prev_tag == 'I' and tag == 'O': chunk_end = True
  if prev_tag != 'O' and prev_tag != '.' and prev_type != type_:
    chunk_end = True
  if prev_tag == ']': chunk_end = True
  if prev_tag == '[': chunk_end = True
  return chunk_end


def _iobes_start_of_chunk(prev_tag, tag, prev_type, type_):
  """startOfChunk of the IOBES-aware Python port conlleval.py (and seqeval)."""
  chunk_start = False
  if tag == 'B': chunk_start = True
  if tag == 'S': chunk_start = True
  if prev_tag == 'E' and tag == 'E': chunk_start = True
  if prev_tag == 'E' and tag == 'I': chunk_start = True
  if prev_tag == 'S' and tag == 'E': chunk_start = True
  if prev_tag == 'S' and tag == 'I': chunk_start = True
  if prev_tag == 'O' and tag == 'E': chunk_start = True
  if prev_tag == 'O' and tag == 'I': chunk_start = True
  if tag != 'O' and tag != '.' and prev_type != type_:
    chunk_start = True
  if tag == '[': chunk_start = True
  if tag == ']': chunk_start = True
  return chunk_start
# fmt: on


def _conlleval_stream(
  gold,
  pred,
  end_of_chunk=_iobes_end_of_chunk,
  start_of_chunk=_iobes_start_of_chunk,
):
  """conlleval.pl's main loop: one pass over tokens, blank line = O O.

  Returns:
    (correct, found_correct, found_guessed, per-type dicts of those three,
    correct_tags, token_counter), named as in the perl.
  """
  lines = []
  for gold_tags, pred_tags in zip(gold, pred):
    lines += [(False, g, p) for g, p in zip(gold_tags, pred_tags)]
    lines.append((True, 'O', 'O'))  # The blank line after each sentence.
  correct_chunk = found_correct = found_guessed = 0
  correct_chunk_t, found_correct_t, found_guessed_t = {}, {}, {}
  correct_tags = token_counter = 0
  in_correct = False
  last_correct, last_correct_type = 'O', ''
  last_guessed, last_guessed_type = 'O', ''
  for boundary, gold_tag, pred_tag in lines:
    guessed, guessed_type = _perl_split(pred_tag)
    correct, correct_type = _perl_split(gold_tag)
    if boundary:
      guessed = 'O'
    end_c = end_of_chunk(last_correct, correct, last_correct_type, correct_type)
    end_g = end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
    start_c = start_of_chunk(
      last_correct, correct, last_correct_type, correct_type
    )
    start_g = start_of_chunk(
      last_guessed, guessed, last_guessed_type, guessed_type
    )
    if in_correct:
      if end_c and end_g and last_guessed_type == last_correct_type:
        in_correct = False
        correct_chunk += 1
        correct_chunk_t[last_correct_type] = (
          correct_chunk_t.get(last_correct_type, 0) + 1
        )
      elif end_c != end_g or guessed_type != correct_type:
        in_correct = False
    if start_c and start_g and guessed_type == correct_type:
      in_correct = True
    if start_c:
      found_correct += 1
      found_correct_t[correct_type] = found_correct_t.get(correct_type, 0) + 1
    if start_g:
      found_guessed += 1
      found_guessed_t[guessed_type] = found_guessed_t.get(guessed_type, 0) + 1
    if not boundary:
      if correct == guessed and guessed_type == correct_type:
        correct_tags += 1
      token_counter += 1
    last_guessed, last_correct = guessed, correct
    last_guessed_type, last_correct_type = guessed_type, correct_type
  if in_correct:
    correct_chunk += 1
    correct_chunk_t[last_correct_type] = (
      correct_chunk_t.get(last_correct_type, 0) + 1
    )
  return (
    correct_chunk,
    found_correct,
    found_guessed,
    correct_chunk_t,
    found_correct_t,
    found_guessed_t,
    correct_tags,
    token_counter,
  )


def _chunks_by_rules(tags, end_of_chunk, start_of_chunk):
  """Chunks of one sentence under the given endOfChunk/startOfChunk."""
  found, prev, prev_type, start = [], 'O', '', 0
  for i, tag in enumerate(list(tags) + ['O']):
    cur, cur_type = _perl_split(tag)
    if end_of_chunk(prev, cur, prev_type, cur_type):
      found.append((start, i, prev_type))
    if start_of_chunk(prev, cur, prev_type, cur_type):
      start = i
    prev, prev_type = cur, cur_type
  return found


# --- Random tag sequences. ---

_TYPES = ('LOC', 'MISC', 'ORG', 'PER')


def _random_spans(rng, length):
  """Non-overlapping (start, end, type) spans; some adjacent, of one type."""
  spans, i = [], 0
  while i < length:
    adjacent = bool(spans) and spans[-1][1] == i and rng.random() < 0.3
    if adjacent or rng.random() < 0.3:
      end = min(length, i + int(rng.integers(1, 5)))
      same = adjacent and rng.random() < 0.5
      type_ = spans[-1][2] if same else _TYPES[rng.integers(len(_TYPES))]
      spans.append((i, end, type_))
      i = end
    else:
      i += 1
  return spans


def _encode(spans, length, scheme):
  """Tags for spans in 'iob1', 'iob2' or 'iobes'."""
  tags = ['O'] * length
  for start, end, type_ in spans:
    for i in range(start, end):
      tags[i] = 'I-' + type_
    if scheme == 'iob2':
      tags[start] = 'B-' + type_
    elif scheme == 'iob1':
      if start > 0 and tags[start - 1][2:] == type_:
        tags[start] = 'B-' + type_  # IOB1 marks B only between two chunks.
    else:
      if end - start == 1:
        tags[start] = 'S-' + type_
      else:
        tags[start], tags[end - 1] = 'B-' + type_, 'E-' + type_
  return tags


def _corrupt(rng, tags, prefixes):
  """A realistic bad prediction: swapped types, dropped B, stray I, misses."""
  out = list(tags)
  for i, tag in enumerate(out):
    r = rng.random()
    if tag == 'O':
      if r < 0.05:  # I- after O (or anywhere) starts a chunk.
        out[i] = 'I-' + _TYPES[rng.integers(len(_TYPES))]
      elif r < 0.08:
        out[i] = (
          prefixes[rng.integers(len(prefixes))]
          + '-'
          + _TYPES[rng.integers(len(_TYPES))]
        )
    else:
      prefix, type_ = tag.split('-', 1)
      if r < 0.08:  # Swap the type of one token.
        out[i] = prefix + '-' + _TYPES[rng.integers(len(_TYPES))]
      elif r < 0.16 and prefix == 'B':  # Drop the B.
        out[i] = 'I-' + type_
      elif r < 0.22:  # Miss the token.
        out[i] = 'O'
      elif r < 0.26:
        out[i] = prefixes[rng.integers(len(prefixes))] + '-' + type_
  return out


def _random_corpus(rng, scheme, num_sentences):
  gold, pred = [], []
  prefixes = {'iob1': 'BI', 'iob2': 'BI', 'iobes': 'BIES'}[scheme]
  for _ in range(num_sentences):
    length = int(rng.integers(0, 15))
    tags = _encode(_random_spans(rng, length), length, scheme)
    gold.append(tags)
    pred.append(_corrupt(rng, tags, prefixes))
  return gold, pred


def _random_tags(rng, length, prefixes):
  """Arbitrary (often invalid) tags over the given prefixes and O."""
  tags = []
  for _ in range(length):
    prefix = (prefixes + 'O')[rng.integers(len(prefixes) + 1)]
    tags.append(
      'O' if prefix == 'O' else prefix + '-' + _TYPES[rng.integers(2)]
    )  # 2 types: more ties.
  return tags


# --- Hand-checked chunks. ---


def test_chunks_iob2():
  # B starts a chunk, I continues it, O ends it; end is exclusive.
  assert metrics.chunks(['B-PER', 'I-PER', 'O', 'B-LOC']) == [
    (0, 2, 'PER'),
    (3, 4, 'LOC'),
  ]
  # Types may contain hyphens (conlleval.pl since 2004: type = after 1st -).
  assert metrics.chunks(['B-GPE-LOC', 'I-GPE-LOC']) == [(0, 2, 'GPE-LOC')]


def test_chunks_iob1():
  # IOB1: B only separates two adjacent chunks of one type, so I I B is two.
  assert metrics.chunks(['I-PER', 'I-PER', 'B-PER']) == [
    (0, 2, 'PER'),
    (2, 3, 'PER'),
  ]
  # A sentence of all I- tags is one chunk (I at the start follows an O).
  assert metrics.chunks(['I-ORG', 'I-ORG', 'I-ORG']) == [(0, 3, 'ORG')]


def test_i_after_o_starts_a_chunk():
  # conlleval's startOfChunk(O, I): a stray I- is a chunk, not dropped.
  assert metrics.chunks(['O', 'I-LOC', 'I-LOC', 'O', 'I-PER']) == [
    (1, 3, 'LOC'),
    (4, 5, 'PER'),
  ]


def test_type_change_splits_chunks():
  # prevType ne type ends the PER chunk and starts a LOC one at the I-.
  assert metrics.chunks(['B-PER', 'I-LOC']) == [(0, 1, 'PER'), (1, 2, 'LOC')]
  assert metrics.chunks(['B-PER', 'I-PER', 'I-LOC', 'I-LOC']) == [
    (0, 2, 'PER'),
    (2, 4, 'LOC'),
  ]


def test_b_after_b():
  # endOfChunk(B, B) and startOfChunk(B, B): two one-token chunks.
  assert metrics.chunks(['B-MISC', 'B-MISC']) == [
    (0, 1, 'MISC'),
    (1, 2, 'MISC'),
  ]


def test_iobes():
  # S is a one-token chunk; anything after E or S starts afresh.
  assert metrics.chunks(['B-LOC', 'I-LOC', 'E-LOC', 'O', 'S-ORG']) == [
    (0, 3, 'LOC'),
    (4, 5, 'ORG'),
  ]
  assert metrics.chunks(['S-PER', 'S-PER']) == [(0, 1, 'PER'), (1, 2, 'PER')]
  assert metrics.chunks(['B-PER', 'E-PER', 'B-PER', 'E-PER']) == [
    (0, 2, 'PER'),
    (2, 4, 'PER'),
  ]
  # E-X then I-X: E ends the chunk and startOfChunk(E, I) starts a new one.
  assert metrics.chunks(['E-PER', 'I-PER']) == [(0, 1, 'PER'), (1, 2, 'PER')]
  # An E after O is a one-token chunk (IOE style).
  assert metrics.chunks(['O', 'E-PER']) == [(1, 2, 'PER')]
  # IOE1: E only separates adjacent same-type chunks, so I E I is two.
  assert metrics.chunks(['I-NP', 'E-NP', 'I-NP']) == [
    (0, 2, 'NP'),
    (2, 3, 'NP'),
  ]
  # B-X followed by S-X: B's chunk ends at the S.
  assert metrics.chunks(['B-PER', 'S-PER']) == [(0, 1, 'PER'), (1, 2, 'PER')]


def test_iobes_where_official_perl_differs():
  # The official conlleval.pl (2004-01-26) has no S rules and no E->B rule,
  # so it merges adjacent same-type IOBES chunks: S-PER S-PER is one chunk of
  # two tokens there. We follow the IOBES port (conlleval.py) and seqeval.
  for tags, ours, perl in [
    (['S-PER', 'S-PER'], [(0, 1, 'PER'), (1, 2, 'PER')], [(0, 2, 'PER')]),
    (['E-PER', 'B-PER'], [(0, 1, 'PER'), (1, 2, 'PER')], [(0, 2, 'PER')]),
    (['S-PER', 'I-PER'], [(0, 1, 'PER'), (1, 2, 'PER')], [(0, 2, 'PER')]),
  ]:
    assert metrics.chunks(tags) == ours
    assert (
      _chunks_by_rules(tags, _perl_end_of_chunk, _perl_start_of_chunk) == perl
    )
  # So the perl scores gold S-PER S-PER against pred B-PER E-PER as one gold
  # chunk, found and correct (F1 100); we (and seqeval) see two gold chunks
  # and one wrong prediction (F1 0). Checked against the real perl script.
  gold, pred = [['S-PER', 'S-PER']], [['B-PER', 'E-PER']]
  assert _conlleval_stream(
    gold, pred, _perl_end_of_chunk, _perl_start_of_chunk
  )[:3] == (1, 1, 1)
  assert metrics.evaluate(gold, pred)['overall'] == metrics.Score(
    0.0, 0.0, 0.0, 2, 1, 0
  )


def test_same_as_official_perl_without_s():
  # On B/I/O (IOB1, IOB2) and I/E/O (IOE1, IOE2) tags, even invalid ones, the
  # official perl rules and ours give the same chunks.
  rng = np.random.default_rng(0)
  for prefixes in ('BI', 'IE'):
    for _ in range(2000):
      tags = _random_tags(rng, int(rng.integers(0, 12)), prefixes)
      assert metrics.chunks(tags) == _chunks_by_rules(
        tags, _perl_end_of_chunk, _perl_start_of_chunk
      ), tags


def test_chunks_edge_cases():
  assert metrics.chunks([]) == []
  assert metrics.chunks(['O', 'O']) == []
  # An entity at the very end is closed by the implicit sentence-end O.
  assert metrics.chunks(['O', 'B-PER']) == [(1, 2, 'PER')]


@pytest.mark.parametrize('tag', ['PER', 'B', 'B-', 'X-PER', '[', '.', ''])
def test_bad_tag(tag):
  with pytest.raises(ValueError, match='bad tag'):
    metrics.chunks(['O', tag])


# --- Hand-checked scores. ---


def test_sentence_end_does_not_join_the_next_sentence():
  # Sentence 0 ends with I-PER and sentence 1 starts with I-PER: two chunks,
  # since conlleval reads the blank line between them as O.
  gold = [['O', 'I-PER'], ['I-PER', 'O']]
  result = metrics.evaluate(gold, gold)
  assert result['overall'].num_gold == 2
  assert result['overall'].num_correct == 2
  # Glued into one sentence, the same tags would be a single chunk.
  assert metrics.chunks(['O', 'I-PER', 'I-PER', 'O']) == [(1, 3, 'PER')]
  # So a prediction of one two-token chunk in one sentence matches neither.
  pred = [['O', 'I-PER'], ['O', 'O']]
  result = metrics.evaluate(gold, pred)
  assert (
    result['overall'].num_gold,
    result['overall'].num_pred,
    result['overall'].num_correct,
  ) == (2, 1, 1)


def test_per_type_scores():
  # Gold: PER[0,2) LOC[3,4) ORG[5,6). Pred: PER[0,2) ORG[3,4) ORG[5,6).
  # Correct: PER and ORG[5,6) -> overall 2/3 precision and recall.
  gold = [['B-PER', 'I-PER', 'O', 'B-LOC', 'O', 'B-ORG']]
  pred = [['B-PER', 'I-PER', 'O', 'B-ORG', 'O', 'B-ORG']]
  result = metrics.evaluate(gold, pred)
  assert result['overall'] == metrics.Score(
    100 * 2 / 3, 100 * 2 / 3, pytest.approx(100 * 2 / 3), 3, 3, 2
  )
  assert list(result['per_type']) == ['LOC', 'ORG', 'PER']  # Sorted.
  # LOC: one gold, none found: precision undefined -> 0, recall 0, F1 0.
  assert result['per_type']['LOC'] == metrics.Score(0.0, 0.0, 0.0, 1, 0, 0)
  # ORG: 1 of 2 found is right (P 50), the one gold is found (R 100),
  # F1 = 2 * 50 * 100 / 150.
  assert result['per_type']['ORG'] == metrics.Score(
    50.0, 100.0, pytest.approx(200 / 3), 1, 2, 1
  )
  assert result['per_type']['PER'] == metrics.Score(
    100.0, 100.0, 100.0, 1, 1, 1
  )
  # Token accuracy counts O tokens too: 5 of 6 tags equal.
  assert result['accuracy'] == pytest.approx(100 * 5 / 6)


def test_partial_match_is_wrong():
  # Same start and type but a different end is not a correct chunk.
  result = metrics.evaluate([['B-PER', 'I-PER']], [['B-PER', 'O']])
  assert result['overall'] == metrics.Score(0.0, 0.0, 0.0, 1, 1, 0)
  assert result['accuracy'] == 50.0


def test_iobes_scores():
  # Gold S-PER S-PER is two chunks; pred B-PER E-PER is one two-token chunk.
  result = metrics.evaluate(
    [['S-PER', 'S-PER', 'S-LOC']], [['B-PER', 'E-PER', 'S-LOC']]
  )
  assert result['overall'] == metrics.Score(
    50.0, 100 / 3, pytest.approx(40.0), 3, 2, 1
  )


def test_empty_sentences():
  # Empty sentences hold no tokens and no chunks but keep indices aligned.
  result = metrics.evaluate([[], ['B-PER'], []], [[], ['B-PER'], []])
  assert result['overall'] == metrics.Score(100.0, 100.0, 100.0, 1, 1, 1)
  assert result['accuracy'] == 100.0
  for gold in ([], [[]], [[], []]):
    result = metrics.evaluate(gold, gold)
    assert result['overall'] == metrics.Score(0.0, 0.0, 0.0, 0, 0, 0)
    assert result['per_type'] == {}
    assert result['accuracy'] == 0.0  # No tokens: conlleval prints nothing.


def test_no_entities():
  # All O in gold and pred: P/R/F1 are undefined, reported as 0; accuracy
  # still counts the O tokens.
  result = metrics.evaluate([['O', 'O'], ['O']], [['O', 'O'], ['O']])
  assert result['overall'] == metrics.Score(0.0, 0.0, 0.0, 0, 0, 0)
  assert result['per_type'] == {}
  assert result['accuracy'] == 100.0
  # Gold entities but nothing predicted.
  result = metrics.evaluate([['B-PER', 'O']], [['O', 'O']])
  assert result['overall'] == metrics.Score(0.0, 0.0, 0.0, 1, 0, 0)
  assert result['accuracy'] == 50.0
  # Predicted entities but none in gold.
  result = metrics.evaluate([['O', 'O']], [['O', 'I-LOC']])
  assert result['overall'] == metrics.Score(0.0, 0.0, 0.0, 0, 1, 0)
  assert list(result['per_type']) == ['LOC']


def test_length_mismatch_names_the_sentence():
  with pytest.raises(ValueError, match='sentence 1:'):
    metrics.evaluate([['O'], ['O', 'O']], [['O'], ['O']])
  with pytest.raises(ValueError, match='2 sentences'):
    metrics.evaluate([['O'], ['O']], [['O']])


def test_as_dict_and_format_table():
  gold = [['B-PER', 'I-PER', 'O', 'B-LOC', 'O', 'B-ORG']]
  pred = [['B-PER', 'I-PER', 'O', 'B-ORG', 'O', 'B-ORG']]
  result = metrics.evaluate(gold, pred)
  plain = json.loads(json.dumps(metrics.as_dict(result)))
  assert plain['num_gold'] == 3 and plain['num_correct'] == 2
  assert plain['f1'] == pytest.approx(200 / 3)
  assert plain['accuracy'] == pytest.approx(500 / 6)
  assert plain['per_type']['ORG'] == {
    'precision': 50.0,
    'recall': 100.0,
    'f1': pytest.approx(200 / 3),
    'num_gold': 1,
    'num_pred': 2,
    'num_correct': 1,
  }
  assert set(plain) == {
    'precision',
    'recall',
    'f1',
    'accuracy',
    'per_type',
    'num_gold',
    'num_pred',
    'num_correct',
  }
  lines = metrics.format_table(result, title='dev').splitlines()
  assert lines[0] == 'dev'
  assert 'accuracy:  83.33%' in lines[1] and 'FB1:  66.67' in lines[1]
  assert [line.split(':')[0].strip() for line in lines[2:]] == [
    'LOC',
    'ORG',
    'PER',
  ]
  assert 'precision:  50.00%; recall: 100.00%; FB1:  66.67' in lines[3]
  assert (
    metrics.format_table(result).splitlines()[0].strip().startswith('overall')
  )


# --- Agreement with the streaming conlleval port and with seqeval. ---


def test_streaming_conlleval_port_agrees():
  # conlleval counts correct chunks while streaming (inCorrect); we intersect
  # spans. They agree on any tags, valid or not, E and S included.
  rng = np.random.default_rng(1)
  for _ in range(500):
    num_sentences = int(rng.integers(0, 5))
    gold = [
      _random_tags(rng, int(rng.integers(0, 8)), 'BIES')
      for _ in range(num_sentences)
    ]
    pred = [_random_tags(rng, len(tags), 'BIES') for tags in gold]
    (
      correct,
      found_correct,
      found_guessed,
      correct_t,
      found_correct_t,
      found_guessed_t,
      correct_tags,
      tokens,
    ) = _conlleval_stream(gold, pred)
    result = metrics.evaluate(gold, pred)
    overall = result['overall']
    assert (overall.num_correct, overall.num_gold, overall.num_pred) == (
      correct,
      found_correct,
      found_guessed,
    ), (gold, pred)
    assert list(result['per_type']) == sorted(
      found_correct_t.keys() | found_guessed_t.keys()
    )
    for type_, score in result['per_type'].items():
      assert (score.num_correct, score.num_gold, score.num_pred) == (
        correct_t.get(type_, 0),
        found_correct_t.get(type_, 0),
        found_guessed_t.get(type_, 0),
      ), (gold, pred, type_)
    assert result['accuracy'] == (
      100 * correct_tags / tokens if tokens else 0.0
    )


def test_chunks_agree_with_seqeval_get_entities():
  # Chunk by chunk, on arbitrary (mostly invalid) well-formed tags.
  rng = np.random.default_rng(6)
  for _ in range(2000):
    tags = _random_tags(rng, int(rng.integers(0, 10)), 'BIES')
    assert [
      (type_, start, end - 1) for start, end, type_ in metrics.chunks(tags)
    ] == get_entities(tags), tags


# seqeval's default mode uses the same IOBES-aware rules (it cites
# conlleval.pl), so on well-formed tags (O or one-letter B/I/E/S prefix, a
# hyphen and a type) it agrees with us everywhere we have found: IOB1, IOB2
# and IOBES, valid or corrupted. The differences we know are elsewhere:
#  * the official conlleval.pl has no S rules (see
#    test_iobes_where_official_perl_differs): there seqeval and we agree with
#    each other, not with the perl;
#  * malformed tags: seqeval takes the first character as the prefix and
#    only warns, e.g. 'PER' is prefix 'P', type 'ER'; conlleval.pl reads it as
#    prefix 'PER' with no type; we raise ValueError.
@pytest.mark.parametrize('scheme', ['iob2', 'iob1', 'iobes'])
def test_agrees_with_seqeval(scheme):
  rng = np.random.default_rng({'iob2': 2, 'iob1': 3, 'iobes': 4}[scheme])
  for _ in range(30):
    gold, pred = _random_corpus(rng, scheme, int(rng.integers(1, 40)))
    result = metrics.evaluate(gold, pred)
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # Undefined-metric warnings.
      expected = (
        precision_score(gold, pred),
        recall_score(gold, pred),
        f1_score(gold, pred),
      )
      report = classification_report(gold, pred, output_dict=True)
    overall = result['overall']
    np.testing.assert_allclose(
      [overall.precision / 100, overall.recall / 100, overall.f1 / 100],
      expected,
      rtol=0,
      atol=1e-9,
    )
    types = sorted(k for k in report if not k.endswith(' avg'))
    assert list(result['per_type']) == types
    for type_, score in result['per_type'].items():
      assert score.num_gold == report[type_]['support']
      assert abs(score.f1 / 100 - report[type_]['f1-score']) < 1e-9
      assert abs(score.precision / 100 - report[type_]['precision']) < 1e-9
      assert abs(score.recall / 100 - report[type_]['recall']) < 1e-9


def test_seqeval_iob2_hand_example():
  # A fixed, readable case on top of the random ones: a stray I-MISC after O
  # is a chunk for both conlleval and seqeval's default mode.
  gold = [
    ['O', 'O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'O'],
    ['B-PER', 'I-PER', 'O'],
  ]
  pred = [
    ['O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'I-MISC', 'O'],
    ['B-PER', 'I-PER', 'O'],
  ]
  result = metrics.evaluate(gold, pred)
  assert result['overall'] == metrics.Score(50.0, 50.0, 50.0, 2, 2, 1)
  assert f1_score(gold, pred) == pytest.approx(0.5)


def test_detection_scores():
  s = np.array([3.0, 2.0, 1.0, -1.0, -2.0])
  gold = np.array([True, False, True, False, True])
  r = metrics.detection_scores(s, gold)
  assert (r['num_pred'], r['num_correct'], r['num_gold']) == (3, 2, 3)
  assert r['precision'] == pytest.approx(200 / 3)
  assert r['f1'] == pytest.approx(200 / 3)
  assert r['ap'] == pytest.approx(100 * (1 + 2 / 3 + 3 / 5) / 3)
  best = metrics.detection_scores(s, gold, r['best_threshold'])
  assert best['f1'] == pytest.approx(r['best_f1'])


def test_detection_scores_with_tied_scores():
  """A threshold cannot split windows of equal score: the best cut and the
  precision-recall curve move over tied windows together."""
  s = np.array([2.0, 1.0, 1.0, 0.0])
  gold = np.array([True, True, False, False])
  r = metrics.detection_scores(s, gold)
  # Cuts: {2} P 1 R 1/2 F1 66.7; {2, 1, 1} P 2/3 R 1 F1 80; all: F1 66.7.
  # Splitting the tie ({2, 1}: F1 100) is not a threshold.
  assert r['best_f1'] == pytest.approx(80.0)
  best = metrics.detection_scores(s, gold, r['best_threshold'])
  assert best['f1'] == pytest.approx(80.0)
  assert r['ap'] == pytest.approx(100 * (0.5 * 1 + 0.5 * 2 / 3))
  assert metrics.average_precision(np.ones(4), gold) == pytest.approx(50.0)


def test_flat_scores_equal_sentence_scores_and_conversion():
  """metrics.evaluate_flat (one array of ids, what training scores) gives
  exactly metrics.evaluate's scores, and tagschemes.convert_flat exactly
  convert's tags, on random tag sequences of every prefix (malformed ones
  included: I- after O, E- without B-, a type change inside a chunk)."""
  tags = ['O', 'B-PER', 'I-PER', 'E-PER', 'S-PER', 'B-LOC', 'I-LOC']
  tags += ['E-LOC', 'S-LOC', 'B-X-Y', 'I-X-Y']
  rng = random.Random(0)
  for _ in range(300):
    lengths = [rng.randint(0, 8) for _ in range(rng.randint(1, 6))]
    gold, pred = (
      [[rng.choice(tags) for _ in range(n)] for n in lengths] for _ in range(2)
    )
    gold_N, pred_N = (
      np.array([tags.index(t) for sent in tags_ for t in sent], int)
      for tags_ in (gold, pred)
    )
    flat = metrics.evaluate_flat(gold_N, pred_N, lengths, tags)
    assert flat == metrics.evaluate(gold, pred), (gold, pred)
    for scheme in ('iob1', 'iob2', 'iobes'):
      want = [t for sent in pred for t in tagschemes.convert(sent, scheme)]
      got = tagschemes.convert_flat(pred_N, lengths, tags, scheme)
      assert list(got) == want, (pred, scheme)
