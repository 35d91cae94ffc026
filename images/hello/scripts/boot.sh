# boot: nothing to do; /init has printed l2.init and powers off (boot timing).
true
