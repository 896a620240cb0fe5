"use strict";
/**
 * What the panel shows, computed from the controller's state (host-free, so tests can
 * check it): the connection indicator, the progress bar, which buttons work, and offers
 * such as "Insert into a new document".
 */

const { startCommand } = require("./connection");

const INDICATOR = {
  connecting: { label: "Connecting…", tone: "busy" },
  connected: { label: "Connected", tone: "ok" },
  reconnecting: { label: "Reconnecting…", tone: "busy" },
  down: { label: "Server not running", tone: "error" },
  mismatch: { label: "Version mismatch", tone: "error" },
  unauthorized: { label: "Wrong token", tone: "error" },
  stopped: { label: "Not connected", tone: "error" },
};

/** @param {InstanceType<typeof import("./controller").Controller>} controller */
function viewOf(controller) {
  const { state, detail, welcome } = controller.connection;
  const ops = welcome ? welcome.capabilities.ops : [];
  const jobs = [...controller.jobs.values()];
  const running = controller.activeJobs();
  const latest = running[running.length - 1] || jobs[jobs.length - 1];
  return {
    indicator: {
      ...INDICATOR[state],
      detail,
      command: state === "down" ? startCommand(controller.connection.url) : null,
    },
    progress: latest ? progressOf(latest) : { fraction: 0, text: "" },
    enabled: {
      generate: state === "connected" && ops.includes("generate"),
      decompose: state === "connected" && ops.includes("decompose"),
      regenerate: state === "connected" && ops.includes("regenerate"),
      split: state === "connected" && ops.includes("split"),
      cancel: running.some((job) => job.status === "submitted" || job.status === "queued" || job.status === "running"),
    },
    layerRange: welcome ? welcome.capabilities.layers : { min: 1, max: 10 },
    offers: jobs.filter((job) => job.status === "orphaned").map((job) => ({ job: job.id, text: `Insert "${job.prompt || job.op}" into a new document` })),
    notice: controller.notice,
  };
}

/** @param {import("./jobs").Job} job */
function progressOf(job) {
  if (job.status === "queued") return { fraction: 0, text: job.position ? `Queued (${job.position} ahead)` : "Queued: runs next" };
  if (job.status === "failed") return { fraction: 0, text: `Failed: ${job.error?.message}` };
  if (job.status === "cancelled") return { fraction: 0, text: "Cancelled" };
  if (job.status === "inserted") return { fraction: 1, text: "Done" };
  const stage = job.cancelRequested ? "cancelling" : job.stage;
  return { fraction: job.fraction, text: `${stage} ${Math.round(job.fraction * 100)}%` };
}

module.exports = { viewOf, progressOf };
