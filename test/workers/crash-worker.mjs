// Test double for the case worker: reports a step, then dies like a native crash.
process.once('message', () => {
  process.send({ kind: 'step', index: 1, label: 'evtchn.send' }, () => process.kill(process.pid, 'SIGSEGV'));
});
