"""The Hugging Face hub: whether it can be reached, and the inputs that need it.

Loading from the hub without network ends in a minute of retries and a traceback. So every script asks first,
for all of its inputs at once, and a user without network gets one line naming each input that needs the hub
and the local file or folder to give instead.
"""
import os
import socket

from errors import DataError

TIMEOUT = 10  # seconds to wait for the hub before saying it is unreachable


def reachable(host="huggingface.co", port=443):
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return True  # offline mode: transformers and datasets answer from the local cache, or fail fast on their own
    try:
        socket.create_connection((host, port), timeout=TIMEOUT).close()
        return True
    except OSError:
        return False


def check_inputs(alternatives):
    """`alternatives`: for each input that would come from the hub, the local input to give instead (the caller
    leaves out inputs that are local). Without network, raise one DataError listing them all; else return."""
    if alternatives and not reachable():
        raise DataError("the Hugging Face hub is unreachable (no network?); use local files instead: "
                        + "; ".join(alternatives))
