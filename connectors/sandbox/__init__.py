"""Local stand-ins of the HubSpot and Klaviyo APIs (loopback HTTP) with synthetic data.

Public Python API (imported lazily, so ``import connectors.sandbox.dataset`` stays light)::

    from connectors.sandbox import start_sandbox

    with start_sandbox(contacts=500, seed=1, rate_limits=False) as sb:
        HubSpot(access_token=sb.hubspot_token, host=sb.hubspot_url)
        KlaviyoAPI(sb.klaviyo_key, test_host=sb.klaviyo_url, max_retries=1)
        sb.set_faults("reset_after=1#1@contacts.batch.update")
        sb.dataset.people[0].email

* :func:`start_sandbox` / :class:`Sandbox` — :mod:`connectors.sandbox.launcher`
* :func:`generate` / :class:`Dataset` / :class:`Person` / :class:`Activity` —
  :mod:`connectors.sandbox.dataset`
* :func:`parse_spec` / :class:`FaultRule` — :mod:`connectors.sandbox.faults`
* the ``/_sandbox/`` control endpoints — :mod:`connectors.sandbox.control`
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.sandbox.dataset import Activity, Dataset, Person, generate
    from connectors.sandbox.faults import FaultRule, FaultSpecError, parse_spec
    from connectors.sandbox.launcher import Sandbox, start_sandbox

__all__ = [
    "Activity",
    "Dataset",
    "FaultRule",
    "FaultSpecError",
    "Person",
    "Sandbox",
    "generate",
    "parse_spec",
    "start_sandbox",
]

_HOME = {
    "Activity": "dataset", "Dataset": "dataset", "Person": "dataset", "generate": "dataset",
    "FaultRule": "faults", "FaultSpecError": "faults", "parse_spec": "faults",
    "Sandbox": "launcher", "start_sandbox": "launcher",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'connectors.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"connectors.sandbox.{home}"), name)
