"""Sequence packing: embed a batch with almost no padding, exactly as the padded forward would.

NLI sentences are short and uneven: padded to its column's longest row, a batch is mostly padding, and the
encoder spends its time on every slot, padding included (benchmarks/RESULTS.md counts them). Packing lays whole
sentences end to end in a few rows of WIDTH tokens and gives the model

  - a block-diagonal attention mask, so a token attends only to the tokens of its own sentence,
  - position ids that restart for every sentence, at the architecture's own first position (0 for BERT;
    padding_idx + 1 for RoBERTa, XLM-R and MPNet, which count from after the padding index), so each one is
    positioned as if it were alone, and
  - token type ids (all 0: one segment) only where the tokenizer makes them, as the padded forward gets them.

Each sentence then sees exactly the inputs it would see in its own padded row, so its token embeddings are the
same up to float rounding (tests/test_packing.py checks 1e-5). `token_embeddings` cuts every sentence back out
into its own padded row with its attention mask, so pooling (pooling.py) reads them exactly as a padded batch. This is the idea behind unpadded ("varlen") attention
kernels on GPUs, done here with a plain 4-D mask: boolean for sdpa, added to the scores for eager attention.

The architectures listed in PACKABLE are packed (`can_pack`), each tested against its padded forward
(tests/test_architectures.py); any other takes the padded path, said once at start (`can_pack`).
"""
import torch

from mnr import distributed

WIDTH = 64  # tokens per packed row (or the longest sentence, if longer). Not wider: attention scores every pair
# of slots in a row, and those between tokens of different sentences are computed only to be masked away.
# Encoders that take explicit position ids and a 4-D attention mask, tested equal to their padded forward. Not
# here: DeBERTa-v2 (its relative-position attention builds its own mask from a 2-D one), ModernBERT (it unpads and
# builds its own sliding-window masks), and decoders (causal attention: a packed row would need a causal block mask).
PACKABLE = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra"}
MIN_PADDING = 0.15  # pack a batch only when padding would be at least this share of its slots. Packing saves the
# padded slots but pays for it (the 4-D mask, cutting sentences back out): on NLI (64 % padding) it halves the step;
# on SciFact's 256-token abstracts (9 % padding) the padded forward was 15 % faster (benchmarks/RESULTS.md).
SAID = set()  # the architectures whose fallback to the padded forward this process has already told
# RoBERTa's scheme: position ids start after the padding index, so padding_idx + 1 of the position embeddings are
# never used (514 positions hold 512 tokens).
PADDING_OFFSET_TYPES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text",
                        "mpnet", "ibert", "roberta-prelayernorm", "luke", "xmod", "markuplm", "lilt", "layoutlmv3"}


def can_pack(model):
    """Whether `model` is embedded packed; the first time an architecture is not, one line says so."""
    config = getattr(model, "module", model).config
    flash = getattr(config, "_attn_implementation", "sdpa") == "flash_attention_2"  # takes no 4-D mask
    if config.model_type in PACKABLE and not flash:
        return True
    if config.model_type not in SAID:
        SAID.add(config.model_type)
        why = "flash-attention 2 takes no 4-D mask" if flash else f"packing serves {', '.join(sorted(PACKABLE))}"
        print(f"note: {config.model_type} is embedded with the padded forward, not packed ({why}): the same "
              "embeddings, computed on padding too", flush=True)
    return False


def saves_work(columns, min_padding=MIN_PADDING, every_rank=False):
    """Whether packing these per-column tokenizer dicts is worth it: padded per column, would padding fill at
    least `min_padding` of the slots? Either way the embeddings are the same (tests/test_packing.py).
    `every_rank`: every torchrun process asks at once, and all get one answer, from all their slots together."""
    padded = sum(c["attention_mask"].numel() for c in columns)
    real = sum(int(c["attention_mask"].sum()) for c in columns)
    if every_rank:
        padded, real = distributed.sum_across_ranks([padded, real])
    return padded - real >= min_padding * padded


def first_position(config):
    """The position id of a sentence's first token: RoBERTa's scheme counts from padding_idx + 1."""
    return config.pad_token_id + 1 if config.model_type in PADDING_OFFSET_TYPES else 0


def pack(columns, width=WIDTH, first=0, pad_id=0):
    """Per-column tokenizer dicts -> one packed batch and where each sentence landed.

    First-fit decreasing: longest sentences first, each into the first row with room (a sentence longer than
    `width` gets a row of its own length). `first`: the first position id of every sentence; `pad_id`: what fills
    the empty slots (masked, never read). Returns (input_ids (R, W), position_ids (R, W), mask (R, 1, W, W),
    placements: for every column a (n, 3) tensor of (row, start, length))."""
    lengths = torch.cat([c["attention_mask"].sum(dim=1) for c in columns])  # (N,) all sentences, column-major
    width = max(width, int(lengths.max()))
    # Choosing rows is bookkeeping on N small integers (a few hundred per step), not tensor work.
    row_of, start_of, room_left = [0] * len(lengths), [0] * len(lengths), []  # room_left: free slots per row
    for s in sorted(range(len(lengths)), key=lambda s: -int(lengths[s])):
        n = int(lengths[s])
        row = next((r for r, room in enumerate(room_left) if room >= n), len(room_left))
        if row == len(room_left):
            room_left.append(width)
        row_of[s], start_of[s] = row, width - room_left[row]
        room_left[row] -= n
    rows, starts = torch.tensor(row_of), torch.tensor(start_of)  # (N,) each
    # Every real token's destination, in the order the tokenizer dicts hold them (row-major, padding skipped).
    sentence = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # (T,) which sentence each token is
    offset = torch.arange(len(sentence)) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)  # (T,)
    dest_row, dest_col = rows[sentence], starts[sentence] + offset
    tokens = torch.cat([c["input_ids"][c["attention_mask"].bool()] for c in columns])  # (T,)
    input_ids = torch.full((len(room_left), width), pad_id, dtype=torch.long)  # masked anyway
    position_ids = torch.zeros(len(room_left), width, dtype=torch.long)
    segment = torch.full((len(room_left), width), -1, dtype=torch.long)  # which sentence owns each slot; -1 = empty
    input_ids[dest_row, dest_col] = tokens
    position_ids[dest_row, dest_col] = offset + first  # positions restart in every sentence
    segment[dest_row, dest_col] = sentence
    # A token may attend to another only within the same sentence; empty slots attend to themselves so that
    # no softmax row is all-masked (their outputs are never read).
    same_sentence = segment[:, :, None] == segment[:, None, :]  # (R, W, W)
    same_sentence |= torch.diag_embed(segment < 0)
    placements = torch.stack([rows, starts, lengths], dim=1).split([len(c["input_ids"]) for c in columns])
    return input_ids, position_ids, same_sentence[:, None], list(placements)


def token_embeddings(model, columns, width=WIDTH):
    """Per-column tokenizer dicts -> per column (token vectors (n, T, D), attention mask (n, T)), as a padded
    forward of that column would give them, from one packed forward for all columns."""
    device, config = next(model.parameters()).device, getattr(model, "module", model).config
    input_ids, position_ids, mask, placements = pack(columns, width, first_position(config), config.pad_token_id or 0)
    # Token types only where the tokenizer made them (DistilBERT, RoBERTa, MPNet take none): one segment, all 0.
    types = {"token_type_ids": torch.zeros_like(input_ids, device=device)} if "token_type_ids" in columns[0] else {}
    mask = mask.to(device)
    if config._attn_implementation == "eager":  # MPNet's attention adds the mask to its scores: 0 or the lowest
        mask = torch.zeros(mask.shape, device=device).masked_fill(~mask, torch.finfo(torch.float32).min)
    hidden = model(input_ids=input_ids.to(device), position_ids=position_ids.to(device), attention_mask=mask,
                   **types).last_hidden_state  # (R, W, D)
    out = []
    for placement in placements:
        # Cut each sentence back out into its own padded row: slots past its end read as padding (mask 0).
        n, longest = len(placement), int(placement[:, 2].max())
        offsets = torch.arange(longest)  # (T,)
        valid = offsets[None, :] < placement[:, 2:3]  # (n, T): the attention mask of the unpacked batch
        cols = (placement[:, 1:2] + offsets[None, :]).clamp(max=hidden.shape[1] - 1)  # (n, T)
        tokens = hidden[placement[:, 0:1].expand(n, longest).to(device), cols.to(device)]  # (n, T, D)
        out.append((tokens, valid.to(device=device, dtype=torch.long)))
    return out
