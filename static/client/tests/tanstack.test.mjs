// bindQueryClient against the real @tanstack/query-core (a dev dependency): seed 003's flow,
// event -> invalidate -> refetch, and a patch that needs no refetch.

import { test } from "node:test";
import assert from "node:assert/strict";
import { QueryClient, QueryObserver } from "@tanstack/query-core";

import { bindQueryClient } from "../tanstack.js";
import { settle } from "./fakes.mjs";
import { ackAll, connectWs, setup } from "./helpers.mjs";

function queryClientWithStats() {
  const queryClient = new QueryClient({ defaultOptions: { queries: { retry: false, staleTime: Infinity } } });
  queryClient.mount();
  const fetches = { campaign: 0, stats: 0 };
  const observe = (queryKey, name) => {
    const observer = new QueryObserver(queryClient, {
      queryKey,
      queryFn: async () => {
        fetches[name] += 1;
        return { name, fetch: fetches[name] };
      },
    });
    const unsubscribe = observer.subscribe(() => {}); // an active query, as a mounted component's
    return { observer, unsubscribe };
  };
  return { queryClient, fetches, observe };
}

async function until(predicate, what) {
  for (let i = 0; i < 50 && !predicate(); i += 1) await settle();
  assert.ok(predicate(), what);
}

test("project event -> invalidate -> the active query refetches (seed 003)", async () => {
  const env = setup();
  const { queryClient, fetches, observe } = queryClientWithStats();
  const campaign = observe(["campaigns", "c1"], "campaign");
  const stats = observe(["dashboard", "stats"], "stats");
  await until(() => fetches.campaign === 1 && fetches.stats === 1, "first fetch of both");
  const routed = [];
  const unbind = bindQueryClient(env.client, queryClient, {
    "project:p1:events": (p) => {
      routed.push(p.data.type);
      return p.data.type === "campaign_status" ? [["campaigns", p.data.campaignId], ["dashboard", "stats"]] : null;
    },
  });
  const ws = await connectWs(env);
  assert.deepEqual(ws.frames("subscribe"), [{ action: "subscribe", channel: "project:p1:events" }]);
  ackAll(ws);
  ws.receive({ channel: "project:p1:events", data: { type: "campaign_status", campaignId: "c1", status: "paused" }, offset: 1 });
  await until(() => fetches.campaign === 2 && fetches.stats === 2, "both refetched after the event");
  await until(() => campaign.observer.getCurrentResult().data?.fetch === 2, "the observer sees the new data");
  ws.receive({ channel: "project:p1:events", data: { type: "agent_status" }, offset: 2 });
  await settle();
  assert.deepEqual(fetches, { campaign: 2, stats: 2 }, "a null answer invalidates nothing");
  assert.deepEqual(routed, ["campaign_status", "agent_status"]);
  unbind();
  assert.deepEqual(ws.frames("unsubscribe"), [{ action: "unsubscribe", channel: "project:p1:events" }]);
  campaign.unsubscribe();
  stats.unsubscribe();
  queryClient.unmount();
});

test("a single key invalidates; a patch writes the cache without a refetch", async () => {
  const env = setup();
  const { queryClient, fetches, observe } = queryClientWithStats();
  const stats = observe(["stats"], "stats");
  await until(() => fetches.stats === 1, "first fetch");
  bindQueryClient(env.client, queryClient, {
    dashboard: (p) => (p.data.type === "stats_update"
      ? { patch: [[["stats"], (old) => ({ ...old, hashrate: p.data.hashrate })]] }
      : ["stats"]),
  });
  const ws = await connectWs(env);
  ackAll(ws);
  ws.receive({ channel: "dashboard", data: { type: "stats_update", hashrate: 7 } });
  await settle();
  assert.equal(queryClient.getQueryData(["stats"]).hashrate, 7);
  assert.equal(fetches.stats, 1, "patched, not refetched");
  ws.receive({ channel: "dashboard", data: { type: "feed_item" }, offset: 1 });
  await until(() => fetches.stats === 2, "a single key (not a list of keys) is invalidated");
  stats.unsubscribe();
  queryClient.unmount();
});

test("a resync (history could not fill a gap) invalidates every query", async () => {
  const env = setup();
  const { queryClient, fetches, observe } = queryClientWithStats();
  const stats = observe(["stats"], "stats");
  await until(() => fetches.stats === 1, "first fetch");
  bindQueryClient(env.client, queryClient, { dashboard: () => null });
  let ws = await connectWs(env);
  ackAll(ws, { dashboard: 3 });
  ws.serverClose(1012);
  await settle();
  await env.clock.advance(env.clock.pendingTimeouts()[0]);
  ws = env.WS.last;
  ws.open();
  ws.pong();
  await settle();
  ws.receive({ type: "subscribed", channel: "dashboard", offset: 40, recovered: false });
  await env.clock.advance(100);
  await until(() => fetches.stats === 2, "refetched after the resync");
  stats.unsubscribe();
  queryClient.unmount();
});
