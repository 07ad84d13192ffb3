"""GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").

In-batch negatives want big batches, and a plain step keeps the encoder's activations of the whole batch for the
backward pass. But the loss only needs the batch's *embeddings* at once; the activations are needed only to push
a gradient back into the encoder, and that can be done a mini-batch at a time. So a step runs in three parts:

  (1) embed every mini-batch without a graph, remembering the RNG state each one started from;
  (2) compute the loss on those embeddings, made leaves that require grad, and backpropagate into them only:
      this gives d loss / d embedding for every row of the batch;
  (3) embed each mini-batch again, now with a graph, under its saved RNG state (so dropout drops the same
      units), and backpropagate the kept gradient into it: sum over mini-batches of (d loss / d e)(d e / d params)
      is the plain step's gradient.

Memory: one mini-batch's activations plus B x D embeddings, for any batch size B. Price: a second forward.
"""
import contextlib

import torch

from mnr.precision import autocast
from mnr.rng import rng_state, set_rng_state


def cached_backward(model, columns, embed_columns, batch_loss, mini_batch_size, device, precision="fp32"):
    """Per-column tokenizer dicts -> the batch's loss (detached), with the plain step's gradients accumulated
    in `model`'s parameters. `embed_columns(model, columns)` embeds a list of columns; `batch_loss(embeddings)`
    takes one (B, D) tensor per column. `precision`: the forward's (mnr/precision.py). Under DDP, gradients are all-reduced once, on the last mini-batch."""
    mini_batches = [(column, {key: values[start:start + mini_batch_size] for key, values in features.items()})
                    for column, features in enumerate(columns)
                    for start in range(0, len(features["input_ids"]), mini_batch_size)]
    encoder = getattr(model, "module", model)  # the no-graph pass needs none of DDP's gradient hooks

    # (1) No graph: the embeddings only, and the RNG state each mini-batch starts from.
    states, cached = [], []
    with torch.no_grad(), autocast(device, precision):
        for _, features in mini_batches:
            states.append(rng_state(device))
            cached.append(embed_columns(encoder, [features])[0].float())
    end_state = rng_state(device)

    # (2) The loss on the cached embeddings, as leaves that collect d loss / d embedding.
    leaves = [e.requires_grad_() for e in cached]
    embeddings = [torch.cat([e for (c, _), e in zip(mini_batches, leaves) if c == column])
                  for column in range(len(columns))]  # one (B, D) per column, rows in the batch's order
    loss = batch_loss(embeddings)
    loss.backward()

    # (3) Replay with a graph under the saved RNG state and push the kept gradient in. The dot product with the
    #     cached gradient is taken in fp32, whatever autocast computed the embedding in.
    for i, (_, features) in enumerate(mini_batches):
        set_rng_state(states[i], device)
        last = i == len(mini_batches) - 1
        with contextlib.nullcontext() if last or encoder is model else model.no_sync():
            with autocast(device, precision):
                replayed = embed_columns(model, [features])[0]
            (replayed.float() * leaves[i].grad).sum().backward()
    set_rng_state(end_state, device)  # continue the RNG stream as if each mini-batch had run once
    return loss.detach()
