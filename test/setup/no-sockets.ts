/**
 * Setup of the unit tier: a unit test opens no socket. Listening or connecting throws, so a test
 * that needs a server belongs to the integration tier (test/) and says so by failing here.
 */
import net from 'node:net';

const refuse = (what: string) =>
  function refused(): never {
    throw new Error(`unit tests open no sockets (${what}); put this test under test/ (integration tier)`);
  };

net.Server.prototype.listen = refuse('listen');
net.Socket.prototype.connect = refuse('connect');
