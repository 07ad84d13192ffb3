"""Query and document prompts: the text e5, bge, nomic or Qwen3-Embedding put before every query and document.

Such a model was trained with its queries read as "query: ..." and its documents as "passage: ...", so it must be
used the same way: a query embedded without its prompt lands elsewhere in the space. A model folder names its
prompts in config_sentence_transformers.json ({"prompts": {"query": ..., "document": ...}}), where
sentence-transformers' `encode_query` and `encode_document` find them. Every script here reads them there too:

  training    --query-prompt before every anchor, --document-prompt before every positive and negative; None
              (the default) takes the start model's own, "" none. The saved folder names the prompts it trained
              with, over the start model's other named prompts, so an e5 model trained here keeps its prompts.
  evaluating  queries get the query prompt, documents the document prompt: the folder's own unless a flag says.
  mining      the same; the table written keeps the raw texts, since the training adds the prompts itself.

A prompt is plain text before the text, tokenized with it and pooled with it, as sentence-transformers does by
default (Pooling's include_prompt): the same embeddings in both libraries.
"""
import os

from mnr import distributed, hub
from mnr.errors import ModelError
from mnr.models import cached_folder, folder_json

ST_CONFIG = "config_sentence_transformers.json"
# sentence-transformers' encode_document takes the first of these a folder names; e5's folders say "passage"
DOCUMENT_NAMES = ("document", "passage", "corpus")


def named_prompts(folder):
    """A model folder's prompts as {name: text}, {} when it names none. ModelError when the file holds something
    else than names and texts: sentence-transformers would fail on it, or prepend a number."""
    config = folder_json(folder, ST_CONFIG) if folder and os.path.isdir(folder) else None
    found = (config or {}).get("prompts") or {}
    if not isinstance(found, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise ModelError(f"{os.path.join(folder, ST_CONFIG)}: \"prompts\" must map names to texts, e.g. "
                         "{\"query\": \"query: \", \"document\": \"passage: \"}; fix it, or remove the key")
    return found


def role_prompts(prompts):
    """{name: text} -> (query prompt, document prompt), as encode_query and encode_document pick them."""
    document = next((prompts[name] for name in DOCUMENT_NAMES if name in prompts), "")
    return prompts.get("query", ""), document


def model_folder(name, wanted=ST_CONFIG):
    """Where a model's sentence-transformers file `wanted` (its config_sentence_transformers.json, or its
    sentence_bert_config.json) can be read: a local folder, or the hub model's snapshot in the local cache, the file
    fetched there when the hub answers (transformers' load never downloads either); None otherwise."""
    if os.path.isdir(name):
        return name
    folder = cached_folder(name)
    if folder and os.path.isfile(os.path.join(folder, wanted)):
        return folder
    if hub.hub_id(name, bare=True) and not hub.offline_mode() and hub.may_load():
        from huggingface_hub import hf_hub_download
        try:
            return os.path.dirname(hf_hub_download(name, wanted))
        except Exception:  # noqa: BLE001 - many models have no such file: they name no prompts, no length
            return folder
    return folder


def saved_prompts(name):
    """A model's own (query prompt, document prompt): its folder's, or ("", "") when it names none."""
    return role_prompts(named_prompts(model_folder(name)))


def chosen(query_prompt, document_prompt, name):
    """The flags' prompts over model `name`'s own: None keeps the model's, "" is none -> (query, document)."""
    return over(saved_prompts(name), query_prompt, document_prompt)


def over(own, query_prompt, document_prompt):
    return own[0] if query_prompt is None else query_prompt, own[1] if document_prompt is None else document_prompt


def prefixed(prompt, texts):
    return [prompt + text for text in texts] if prompt else list(texts)


def prompted_rows(rows, query_prompt, document_prompt, model_name):
    """Training rows (anchor, positive, negatives...) with the prompts before their texts: the query prompt before
    the anchor, the document prompt before every other column. The prompts are the flags', None being the start
    model's own; when the start model's are used, rank 0 says so (no flag was typed to explain them)."""
    query, document = chosen(query_prompt, document_prompt, model_name)
    if not (query or document):
        return rows
    if distributed.rank() == 0 and (query_prompt is None and query or document_prompt is None and document):
        print(f"prompts: query {query!r}, document {document!r} ({model_name}'s own; --query-prompt '' and "
              "--document-prompt '' train without them)")
    return [(query + anchor, *(document + text for text in rest)) for anchor, *rest in rows]


def saved_config(start, config):
    """The "prompts" and "default_prompt_name" of the saved folder's config_sentence_transformers.json: the prompts
    the run trained with (config's QUERY_PROMPT and DOCUMENT_PROMPT, None being the start model's own) over the
    start model's other named prompts (`start`: its folder, None when not on disk). "query" and "document" are
    named whenever they are not empty, or must say "" over a prompt of the start model's."""
    own = named_prompts(start) if start else {}
    prompts = dict(own)
    asked = (config.get("QUERY_PROMPT"), config.get("DOCUMENT_PROMPT"))  # absent from a config of no prompts
    for role, flag, inherited in zip(("query", "document"), asked, role_prompts(own)):
        used = inherited if flag is None else flag
        if used or inherited:
            prompts[role] = used
    config_file = (folder_json(start, ST_CONFIG) if start else None) or {}
    default = config_file.get("default_prompt_name")
    return {"prompts": prompts, "default_prompt_name": default if default in prompts else None}


def prompted_task(task, query_prompt, document_prompt):
    """A retrieval task (mnr/retrieval.py) with its queries and documents read as the prompts say."""
    return dict(task, queries=prefixed(query_prompt, task["queries"]), corpus=prefixed(document_prompt, task["corpus"]))


def scoring_prompts(name, query_prompt, document_prompt):
    """The prompts to score model `name` with: the flags' (None: the model's own) -> ((query, document), the keys
    its result carries: query_prompt, document_prompt, and prompt_note when they are not the model's own)."""
    own = saved_prompts(name)
    used, note = over(own, query_prompt, document_prompt), None
    if used != own:  # a score without the prompts a model was trained with says little of the model
        note = ("trained with prompts, scored without them" if any(own) and not any(used) else
                "scored with other prompts than its own" if any(own) else
                "scored with prompts its folder does not name")
    return used, {"query_prompt": used[0], "document_prompt": used[1], **({"prompt_note": note} if note else {})}


def noted(results):
    """Results for the table: a model scored with other prompts than its own says so beside its name."""
    return [dict(r, model=f"{r['model']} ({r['prompt_note']})") if r.get("prompt_note") else r for r in results]
