/** Public entry of the api.smallest.ai simulator. */
export { startSimulator, DEFAULT_SIMULATOR_PORT, DEFAULT_WS_CONNECTIONS_PER_UNIT } from './server.ts';
export type { SimulatorAccount, SimulatorHandle, SimulatorOptions, RecordedRequest } from './server.ts';
export { simulatorCommand } from './command.ts';
