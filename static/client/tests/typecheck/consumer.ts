// Compiled (not run) by tests/types.test.mjs: the published declarations type a real use.
import { Client, PulseError, SubscriptionState, getClient } from "pulse-realtime-client";
import type { Publication } from "pulse-realtime-client";
import { bindQueryClient } from "pulse-realtime-client/tanstack";

const client: Client = new Client({ baseUrl: "http://localhost:8000/", token: "t", transports: ["websocket"] });
const sub = client.subscribe("dashboard", { since: 3 });
sub.on("publication", (p: Publication) => p.data.type as string);
sub.on("subscribed", ({ recovered, epoch }) => (recovered ? epoch : null));
sub.on("error", (error: PulseError) => error.reason);
const state: string = sub.state === SubscriptionState.FAILED ? "failed" : sub.state;
client.on("metrics", (m) => m.channels.length + m.sent);
client.on("state", (s) => s.mode);
const page = await client.history("dashboard", { since: 0, limit: 10 });
const offsets: number[] = page.publications.map((p) => p.offset);
getClient({ baseUrl: "http://localhost:8000/" });
const unbind: () => void = bindQueryClient(client, {
  invalidateQueries: async () => {},
  setQueryData: () => undefined,
}, { dashboard: (p) => [["stats", p.channel]] });
export { state, offsets, unbind };
