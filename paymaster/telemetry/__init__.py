"""Telemetry: tasks and steps as OpenTelemetry traces and metrics, and live cost anomalies.

Both are observers: pass them to ``Runtime(observers=[...])``. Importing this
package never needs the ``otel`` extra; constructing ``OpenTelemetry`` does.
"""

from ._anomalies import LiveAnomalies, LiveAnomaly
from ._otel import OpenTelemetry

__all__ = ["LiveAnomalies", "LiveAnomaly", "OpenTelemetry"]
