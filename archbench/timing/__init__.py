"""How one step is timed: statistics, the adaptive timer, memory, the device peak, the step itself."""
