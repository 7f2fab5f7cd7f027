// Loads every subsystem that registers hypercalls or hooks with the model.
// Importing this module is what makes `hypercall()` know them.
import './version.js';
import './vm-assist.js';
import './memory-op.js';
import './runstate.js';
import './time.js';
import './timer.js';
import './sched.js';
import './vcpu-op.js';
import './evtchn.js';
import './hvm-op.js';
import './physdev.js';
import './gnttab.js';
import './backend-memory.js';

export { hypercall, wrmsr, hypercallHandlers } from './hypercall.js';
