"""Telemetry: tasks and steps as OpenTelemetry traces and metrics, live cost anomalies and surge alerts.

Both are observers: pass them to ``Runtime(observers=[...])``. Importing this
package never needs the ``otel`` extra; constructing ``OpenTelemetry`` does.
"""

from ._anomalies import LiveAnomalies, LiveAnomaly
from ._otel import OpenTelemetry
from ._surges import RaiseCaps, SurgeAlert, SurgeAlerts

__all__ = ["LiveAnomalies", "LiveAnomaly", "OpenTelemetry", "RaiseCaps", "SurgeAlert", "SurgeAlerts"]
