"""Kernel feature detection: one frozen Features value, from the running system (host.detect) or
from a kernel config file (fromconfig.features). Kept empty so that `runtime run` can import the
few parts it needs without the rest."""
