"""kombu's filesystem transport, writing each message atomically (the embedded broker).

kombu creates a message's file and only then writes it, and a reader does not take the
writer's lock: a consumer polling at that moment moves away the empty file, fails to decode it
(``JSONDecodeError``) and its worker's consumer stops. Here a message is written under a name
no reader matches (``<name>.msg.partial``) and renamed into place once complete, which is
atomic on one filesystem, so a reader sees a whole message or none. ``broker_sweep``
(project/filesystem_broker.py) removes a partial file a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from project.filesystem_broker import PARTIAL


class Channel(filesystem.Channel):
    # kombu's own override of the virtual channel's _put has this signature already.
    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]
        # kombu's own name, so that readers keep their order (oldest first).
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL
        try:
            with open(partial, "wb", buffering=0) as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
