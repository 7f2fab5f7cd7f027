// Test double for the case worker: starts a step and never finishes (a wedged ioctl).
process.once('message', () => {
  process.send({ kind: 'step', index: 0, label: 'hypercall.raw' });
  setInterval(() => {}, 1000);
});
