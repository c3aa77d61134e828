"""Klaviyo stand-in of the sandbox: ``KlaviyoState``, ``KlaviyoSettings``, ``build_app``.

```python
state = KlaviyoState(); state.load_dataset(dataset)
app = build_app(state, KlaviyoSettings())
with SandboxServer(app) as server:   # connectors.sandbox.server
    KlaviyoAPI("pk_sandbox", test_host=server.url, max_retries=1)
```
"""

from connectors.sandbox.klaviyo.app import KlaviyoApp, build_app
from connectors.sandbox.klaviyo.settings import KlaviyoSettings
from connectors.sandbox.klaviyo.state import KlaviyoState

__all__ = ["KlaviyoApp", "KlaviyoSettings", "KlaviyoState", "build_app"]
