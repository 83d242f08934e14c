"""The simulator's tests: the simulated mill, its PLC, lab and faults, its OPC UA and Modbus
servers, the demo's story and summary, and the demo model package (agent/demo/, models/)."""
