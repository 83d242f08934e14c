"""The simulated plant (mill dynamics, PLC emulation, OPC UA and Modbus servers) and the reference cloud. The daemon never imports this package."""
