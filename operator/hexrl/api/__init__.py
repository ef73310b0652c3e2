"""The RLJob API: spec/status models, reason constants, and the CRD generated from them."""

from hexrl.api.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    RLJob,
    RLJobSpec,
    RLJobStatus,
)

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "RLJob", "RLJobSpec", "RLJobStatus"]
