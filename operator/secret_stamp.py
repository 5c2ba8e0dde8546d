"""The store annotation that records the versions of the Secrets a Bot names.

A store entry carries, beside the spec, the ``resourceVersion`` of every Secret its Bot names
(``llm.apiKeySecretRef``, ``llm.fallbacks[].apiKeySecretRef``, the tools' header
``secretRef``s): when one changes, the operator re-writes the entry with the new version, a new
store revision, so the runtimes rebuild the bot and read the new values. Never a value.

The format of the one annotation ``secretVersion``:

* a Bot naming no Secret: no annotation;
* a Bot naming one Secret (one key or several of it): that Secret's resourceVersion, e.g.
  ``{"secretVersion": "1234"}`` -- what operators before the tools wrote for
  ``llm.apiKeySecretRef``, so their entries are current as they are (nothing re-written);
* a Bot naming several Secrets: a compact JSON object of Secret name -> resourceVersion, the
  names sorted: ``{"secretVersion": "{\\"llm-keys\\":\\"1234\\",\\"tool-auth\\":\\"1240\\"}"}``.

Reading it back (:func:`recorded`), a plain value is the version of the Secret of the first
reference (``llm.apiKeySecretRef`` when set): an entry written by an older operator for a Bot
that also names fallback or tool Secrets is re-written once, with every Secret's version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from kubebots.runtime.schema.secret_refs import SecretRefAt

SECRET_VERSION = "secretVersion"


def stamp(refs: Sequence[SecretRefAt], versions: Mapping[str, str]) -> dict[str, str]:
    """The annotations of an entry naming ``refs``, given ``versions`` by Secret name."""
    names = {ref.name for _, ref in refs}
    if not names:
        return {}
    if len(names) == 1:
        (name,) = names
        return {SECRET_VERSION: versions[name]}
    held = {name: versions[name] for name in sorted(names) if name in versions}
    return {SECRET_VERSION: json.dumps(held, separators=(",", ":"))}


def recorded(annotations: Mapping[str, str], refs: Sequence[SecretRefAt]) -> dict[str, str]:
    """The Secret versions an entry naming ``refs`` records, by Secret name."""
    value = annotations.get(SECRET_VERSION)
    if value is None or not refs:
        return {}
    if value.startswith("{"):
        try:
            held = json.loads(value)
        except ValueError:
            return {}
        if isinstance(held, dict):
            return {k: v for k, v in held.items() if isinstance(k, str) and isinstance(v, str)}
        return {}
    return {refs[0][1].name: value}
