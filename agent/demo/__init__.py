"""The simulated plant and the reference cloud: used by the demo, tests and benchmarks.

Mill dynamics, PLC emulation, the OPC UA and Modbus servers. The daemon never imports this
package (an import-linter contract enforces it).
"""
