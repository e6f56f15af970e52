"""The dashboard: the assistant, its quality and its releases in a browser, served by the gateway at ``/ui``."""

from forgepilot.web.charts import Series, bar_chart, line_chart
from forgepilot.web.routes import SignIn, Viewer, router, sign_in_redirect

__all__ = ["Series", "SignIn", "Viewer", "bar_chart", "line_chart", "router", "sign_in_redirect"]
