"""Tag schemes: training on IOBES, decoding back, and the valid transitions.

A file's tags are IOB1, IOB2 or IOBES (`metrics` reads all of them with
conlleval's chunk semantics). Training may use IOBES internally (S- for a
one-word entity, B- I- ... E- for longer ones), which tells the model where
an entity ends; predictions are turned back into chunks and written in the
file's scheme, so scores are always computed against the file's own tags.
"""

import numpy as np

from research.evaluation import metrics

SCHEMES = ('file', 'iobes')


def file_scheme(tag_sequences):
  """'iobes' if E-/S- occur, 'iob1' if an I- tag starts a chunk, else 'iob2'."""
  iob1 = False
  for tags in tag_sequences:
    prev = 'O'
    for tag in tags:
      if tag[:2] in ('E-', 'S-'):
        return 'iobes'
      if tag.startswith('I-') and (prev == 'O' or prev[2:] != tag[2:]):
        iob1 = True
      prev = tag
  return 'iob1' if iob1 else 'iob2'


def from_chunks(length, found, scheme):
  """Tags of a sentence of `length` words holding the chunks `found`
  ((start, end, type) as from metrics.chunks), written in `scheme`."""
  tags = ['O'] * length
  prev_end, prev_type = -1, None
  for start, end, type_ in found:
    for i in range(start, end):
      tags[i] = f'I-{type_}'
    if scheme == 'iobes':
      if end - start == 1:
        tags[start] = f'S-{type_}'
      else:
        tags[start], tags[end - 1] = f'B-{type_}', f'E-{type_}'
    elif scheme == 'iob2' or (prev_end == start and prev_type == type_):
      tags[start] = f'B-{type_}'  # iob1: B- only between touching chunks
    prev_end, prev_type = end, type_
  return tags


def convert(tags, scheme):
  """One sentence's tags, read as chunks, written in `scheme`."""
  return from_chunks(len(tags), metrics.chunks(tags), scheme)


def convert_flat(ids_N, lengths, tags, scheme):
  """`convert` of sentences given as one flat array of ids into `tags`
  (metrics.flat_chunks): the [N] tags (an object array) in `scheme`."""
  code_N, written = convert_flat_codes(ids_N, lengths, tags, scheme)
  return written[code_N]


def convert_flat_codes(ids_N, lengths, tags, scheme):
  """`convert_flat` as (codes [N], the tags they index: an object array of
  'O' and each prefix of `scheme` with each type found): no string is made
  per word."""
  start, end, type_M = metrics.flat_chunks(ids_N, lengths, tags)
  names, t_M = np.unique(type_M.astype(str), return_inverse=True)
  n = len(names)
  written = np.array(
    ['O', *(f'{p}-{t}' for p in 'BIES' for t in names)], dtype=object
  )
  B, I, E, S = (1 + i * n + t_M for i in range(4))  # noqa: E741
  out = np.zeros(len(ids_N) + len(lengths), np.int64)
  position, chunk = metrics.covered(start, end)
  out[position] = I[chunk]
  if scheme == 'iobes':
    one = end - start == 1
    out[start[one]] = S[one]
    out[start[~one]] = B[~one]
    out[end[~one] - 1] = E[~one]
  else:
    begins = np.ones(len(start), bool)
    if scheme == 'iob1':  # B- only between touching chunks of one type
      begins[0:1] = False
      begins[1:] = (start[1:] == end[:-1]) & (t_M[1:] == t_M[:-1])
    out[start[begins]] = B[begins]
  return metrics.without_boundaries(out, lengths), written


def tag_set(tags, scheme):
  """The training tags in `scheme`: 'O' first, then sorted (as check_tags)."""
  if scheme != 'iobes':
    return list(tags)
  types = sorted({t[2:] for t in tags if t != 'O'})
  return ['O'] + sorted(f'{p}-{t}' for t in types for p in 'BIES')


def valid_transitions(tags, scheme):
  """Which tag may follow which under chunk semantics, for decoding.

  tags: the tag list; scheme: theirs ('iob1', 'iob2' or 'iobes').
  Returns (allowed_CxC, may_start_C, may_end_C) bool arrays. IOB2: I-X only
  after B-X or I-X (and never first). IOBES: after B-X or I-X only I-X or
  E-X; I-X and E-X only there; B-X and I-X never last. IOB1 (I-X may open
  a chunk) allows everything.
  """
  C = len(tags)
  allowed = np.ones((C, C), bool)
  first = np.ones(C, bool)
  last = np.ones(C, bool)
  prefix = [t[:1] if t != 'O' else 'O' for t in tags]
  kind = [t[2:] for t in tags]
  if scheme == 'iobes':
    for i in range(C):
      inside = prefix[i] in 'BI'
      for j in range(C):
        continues = prefix[j] in 'IE'
        allowed[i, j] = (
          (continues and kind[j] == kind[i]) if inside else not continues
        )
      first[i] = prefix[i] not in 'IE'
      last[i] = prefix[i] not in 'BI'
  elif scheme == 'iob2':
    for j in range(C):
      if prefix[j] == 'I':
        allowed[:, j] = [
          prefix[i] in 'BI' and kind[i] == kind[j] for i in range(C)
        ]
        first[j] = False
  return allowed, first, last
