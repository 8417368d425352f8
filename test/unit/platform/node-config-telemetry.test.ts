// Operations settings of a node: metrics and health ports, OTLP endpoint,
// the size of the record cache.
import { afterEach, describe, expect, it, vi } from "vitest";
import { resolveNodeConfig } from "../../../services/platform/node-config.js";

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("node config: operations settings", () => {
  it("are off by default", () => {
    vi.stubEnv("OTEL_EXPORTER_OTLP_ENDPOINT", "");
    vi.stubEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "");
    const cfg = resolveNodeConfig({});
    expect(cfg.metricsPort).toBe(-1);
    expect(cfg.healthPort).toBe(-1);
    expect(cfg.otlpEndpoint).toBeUndefined();
  });

  it("come from DELTAMESH_* and the standard OTEL variable", () => {
    vi.stubEnv("DELTAMESH_METRICS_PORT", "9464");
    vi.stubEnv("DELTAMESH_HEALTH_PORT", "50052");
    vi.stubEnv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
    const cfg = resolveNodeConfig({});
    expect(cfg).toMatchObject({ metricsPort: 9464, healthPort: 50052, otlpEndpoint: "http://collector:4318" });
  });

  it("prefer flags over the environment", () => {
    vi.stubEnv("DELTAMESH_METRICS_PORT", "9464");
    expect(resolveNodeConfig({ metricsPort: 0 }).metricsPort).toBe(0);
  });

  it("refuse a port that is not a number", () => {
    vi.stubEnv("DELTAMESH_METRICS_PORT", "nine");
    expect(() => resolveNodeConfig({})).toThrow(/metrics port must be an integer/);
  });

  it("size the record cache in MiB: 32 by default, 0 turns it off, a negative size is refused", () => {
    vi.stubEnv("DELTAMESH_RECORD_CACHE_MB", "");
    expect(resolveNodeConfig({}).recordCacheMb).toBe(32);
    vi.stubEnv("DELTAMESH_RECORD_CACHE_MB", "0");
    expect(resolveNodeConfig({}).recordCacheMb).toBe(0);
    vi.stubEnv("DELTAMESH_RECORD_CACHE_MB", "-1");
    expect(() => resolveNodeConfig({})).toThrow(/record cache size must be 0 \(off\) or more MiB, got -1/);
    vi.stubEnv("DELTAMESH_RECORD_CACHE_MB", "lots");
    expect(() => resolveNodeConfig({})).toThrow(/record cache size \(MiB\) must be an integer/);
  });
});
