// Telling long-lived consumers (the change-stream hub) that what principals
// may see has changed: the policy section, or the schemas it was compiled
// against (a field's mask or sensitivity). Other config edits do not wake
// them. On each call, rebuild the views (viewFor) of open subscribers and
// compare keys: a subscriber whose view key changed may need enter/leave
// events for the records it holds.
import type { ConfigSnapshot, ConfigSource } from "../config/source.js";
import type { Policy } from "./policy.js";
import { POLICIES_SECTION } from "./policy-load.js";

/** What of a snapshot decides access: its policy section and its collection schemas. */
function accessInputs(s: ConfigSnapshot): string {
  return JSON.stringify([s.doc[POLICIES_SECTION] ?? null, s.doc["collections"] ?? null, s.doc["default_phone_region"] ?? null]);
}

/** Calls `listener` with each new policy that can change what someone sees; returns the unsubscribe function. */
export function onPolicyChange(config: ConfigSource, listener: (policy: Policy) => void): () => void {
  let last = accessInputs(config.current());
  return config.onChange((s) => {
    const now = accessInputs(s);
    if (now === last) return;
    last = now;
    listener(s.policy);
  });
}
