// What other areas use from telemetry: the gauges they feed, the
// stream-delivery hook, and the published names. Setup (startTelemetry) is
// for the process entry point only.
export { registerConfigRevision, registerLeaderStatus, registerOpenStreams, registerStreamLag } from "./gauges.js";
export { startStreamDelivery, type DeliveryScope, type StreamDelivery } from "./stream-delivery.js";
export * from "./names.js";
